"""Side-by-side CPU comparison of the core ops (issue: core engine), baselines first.

    python bench/compare_cpu.py            # the issue's sizes (several minutes on 2 cores)
    python bench/compare_cpu.py --quick    # small sizes, a smoke run

Prints a table and appends rows to bench/results/cpu_ops.csv. Rates:
  kernel_matmul, kernel_matrix: kernel entries per second, n * m / seconds
  agop: GFLOP/s of the value GEMM, 2 q n (c d + c) / seconds
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines as B  # noqa: E402
from _common import append_rows, machine, table, timeit  # noqa: E402

import rfmfast  # noqa: E402


def row(op, case, impl, s, rate, unit, ref_s, mem, notes=""):
    return {"op": op, "case": case, "impl": impl, "seconds": s, "rate": rate, "rate_unit": unit,
            "ratio_to_rfmfast": s / ref_s if ref_s else float("nan"), "peak_mem_mb": mem,
            "notes": notes}


def bench_matmul(n, d, t, rows, keops):
    torch.manual_seed(0)
    X, Z, V = torch.randn(n, d), torch.randn(n, d), torch.randn(n, t)
    L = 10.0
    case = f"laplace n=m={n} d={d} t={t}"
    a_s, a_mem, a_out = timeit(lambda: B.matmul_plain(X, Z, V, L), repeat=2)
    b_s, b_mem, cfg = B.tuned_best(X, Z, V, L, timeit)
    g_s, e_s = B.floor_matmul(X, Z, V, L, timeit, *cfg)
    k_res = None
    if keops:
        k_res = bench_keops(X, Z, V, L)
    r_s, r_mem, r_out = timeit(lambda: rfmfast.kernel_matmul(X, Z, V, bandwidth=L, backend="cpu"))
    err = float((r_out.double() - a_out.double()).norm() / a_out.double().norm())
    ent = n * n
    rows.append(row("kernel_matmul", case, "(a) plain blocked torch (cdist)", a_s, ent / a_s, "entries/s", r_s, a_mem))
    rows.append(row("kernel_matmul", case, f"(b) tuned blocked torch {cfg[0]}x{cfg[1]}", b_s, ent / b_s, "entries/s", r_s, b_mem))
    if k_res:
        rows.append(row("kernel_matmul", case, "(c) pykeops", k_res[0], ent / k_res[0], "entries/s", r_s, None, k_res[1]))
    f_s = g_s + e_s
    rows.append(row("kernel_matmul", case, "(d) floor: tiled GEMM + sqrt/exp", f_s, ent / f_s, "entries/s", r_s, None,
                    f"GEMM {g_s:.3f} s + sqrt/exp {e_s:.3f} s"))
    rows.append(row("kernel_matmul", case, "rfmfast cpu", r_s, ent / r_s, "entries/s", r_s, r_mem,
                    f"rel. error vs (a): {err:.1e}"))


def bench_keops(X, Z, V, L):
    try:
        from pykeops.torch import LazyTensor
    except Exception as e:  # noqa: BLE001 - any failure means "not available here"
        print(f"pykeops unavailable: {e}")
        return None
    import time

    def run():
        x = LazyTensor(X[:, None, :])
        z = LazyTensor(Z[None, :, :])
        K = (-(((x - z) ** 2).sum(-1).sqrt()) / L).exp()
        return K @ V

    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    s, _, _ = timeit(run, repeat=2, warmup=0)
    return s, f"first call (compile) {first:.1f} s"


def bench_agop(n, d, c, rows, with_reference):
    torch.manual_seed(0)
    X = torch.randn(n, d) / d ** 0.5 * 3
    alpha = torch.randn(n, c)
    A = torch.randn(d, d)
    M = A @ A.T / d
    w, U = torch.linalg.eigh(M.double())
    sqrtM = ((U * w.clamp(min=0).sqrt()) @ U.T).float()
    case = f"laplace q=n={n} d={d} c={c} full M"
    flops = 2.0 * n * n * (c * d + c)
    try:
        x_s, x_mem, x_out = timeit(lambda: B.xrfm_agop(X, X, alpha, sqrtM), repeat=1, warmup=0)
    except ImportError:
        x_s = None
    ref_s = None
    if with_reference:
        ref_s, ref_mem, _ = timeit(lambda: rfmfast.agop(X, X, alpha, M=M, backend="reference"),
                                   repeat=1, warmup=0)
    rate = B.sgemm_rate(n, c * d + c, timeit=timeit)
    dist_rate = B.sgemm_rate(n, d, timeit=timeit)
    floor = flops / rate + 2.0 * n * n * d / dist_rate
    r_s, r_mem, r_out = timeit(lambda: rfmfast.agop(X, X, alpha, M=M, backend="cpu"), repeat=2)
    if x_s is not None:
        rows.append(row("agop", case, "xrfm 0.4.5 LaplaceKernel.get_agop", x_s, flops / x_s / 1e9, "GFLOP/s", r_s, x_mem,
                        "query batches of 10,000 as its fit_M"))
    if ref_s is not None:
        rows.append(row("agop", case, "rfmfast reference (plain torch)", ref_s, flops / ref_s / 1e9, "GFLOP/s", r_s, ref_mem))
    rows.append(row("agop", case, "floor: value+distance GEMM at torch's rate", floor, flops / floor / 1e9, "GFLOP/s", r_s, None,
                    f"SGEMM {rate / 1e9:.0f} GFLOP/s (value shape), {dist_rate / 1e9:.0f} (distance shape)"))
    rows.append(row("agop", case, "rfmfast cpu", r_s, flops / r_s / 1e9, "GFLOP/s", r_s, r_mem))


def bench_kernel_matrix(n, d, rows):
    torch.manual_seed(0)
    X, Z = torch.randn(n, d), torch.randn(n, d)
    case = f"laplace n=m={n} d={d}"

    def cdist_exp(Z):
        K = torch.cdist(X, Z)
        return K.mul_(-0.1).exp_()

    c_s, c_mem, _ = timeit(lambda: cdist_exp(Z), repeat=2)
    cs_s, _, _ = timeit(lambda: cdist_exp(X), repeat=2)
    r_s, r_mem, _ = timeit(lambda: rfmfast.kernel_matrix(X, Z, backend="cpu"), repeat=2)
    rs_s, rs_mem, _ = timeit(lambda: rfmfast.kernel_matrix(X, backend="cpu"), repeat=2)
    ent = n * n
    rows.append(row("kernel_matrix", case, "torch.cdist + exp_ (Z given)", c_s, ent / c_s, "entries/s", r_s, c_mem))
    rows.append(row("kernel_matrix", case, "rfmfast cpu (Z given)", r_s, ent / r_s, "entries/s", r_s, r_mem))
    rows.append(row("kernel_matrix", case + " sym", "torch.cdist(X, X) + exp_", cs_s, ent / cs_s, "entries/s", rs_s, None))
    rows.append(row("kernel_matrix", case + " sym", "rfmfast cpu (Z=None, symmetric)", rs_s, ent / rs_s, "entries/s", rs_s, rs_mem))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    p.add_argument("--only", choices=["kernel_matmul", "agop", "kernel_matrix"], action="append")
    p.add_argument("--keops", action="store_true", help="include pykeops (compiles on first use)")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    only = set(args.only or ["kernel_matmul", "agop", "kernel_matrix"])
    n = 4000 if args.quick else 20_000
    rows = []
    print(f"machine: {machine()}")
    if "kernel_matmul" in only:
        for t in (1, 16):
            bench_matmul(n, 50, t, rows, args.keops and t == 1)
    if "agop" in only:
        bench_agop(n, 100, 10, rows, with_reference=False)
        bench_agop(2000, 100, 10, rows, with_reference=True)  # the reference is slow: small n
    if "kernel_matrix" in only:
        bench_kernel_matrix(n, 50, rows)
    print(table(rows))
    if not args.no_save:
        print("appended to", append_rows("cpu_ops.csv", rows))


if __name__ == "__main__":
    main()
