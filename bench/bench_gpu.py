"""GPU benchmarks of the Triton backends, side by side with their PyTorch baselines.

    python bench/bench_gpu.py --out DIR             # on a CUDA machine (bench/gpu_check.sh)
    python bench/bench_gpu.py --out DIR --dry-run   # tiny sizes; CPU + Triton interpreter if no GPU

1. kernel_matmul, laplace, n = m = 200,000, d = 64, t = 8 (float32): blocked PyTorch (addmm for
   the distances, in-place epilogue, mm with V; the block is as many rows as fit 4 GB of
   kernel entries), eager and torch.compile'd, float32 and TF32 matmuls; then the fused Triton
   kernel in each precision. Rate: n m kernel entries per second. Ratio: baseline time /
   Triton time, against the fastest baseline of the matching matmul precision (float32 for
   "ieee", TF32 for "tf32" and "bf16").
2. agop, laplace, n = 200,000 centers, q = 20,000 queries (a seeded sample of the centers, as
   in an RFM step), d = 100, c = 10, a full M: xRFM's PyTorch path
   (LaplaceKernel.get_agop in sample batches sized as xRFM sizes them) when xrfm imports, and
   always the same path re-implemented here in plain PyTorch (labelled so); then Triton, fused
   and two_stage (RFMFAST_TRITON_AGOP, rfmfast.ops.agop.triton), in each precision.
   Rate: q n (query, center) pairs per second. Peak memory beyond the inputs is recorded.
3. RFMRegressor.fit at n = 100,000, d = 50 (MATH.md's low-rank target), wall clock end to end.
4. Precision table: each op's error against float64 per precision at n = 256, d = 64, next to
   plain PyTorch's error on inputs rounded to that precision.
--ptxas-report (no GPU needed): registers and spill bytes of every autotune configuration,
compiled for sm_90a.

They run in the order 1, 3, 2, 4; past --budget-s the remaining ones are skipped (a row says so).
Timing: triton.testing.do_bench (CUDA events, median) on GPU; the host clock only in --dry-run
on CPU, where nothing is a measurement. Every result is checked against a float64 reference on
a subset (rel_err column). Rows go to DIR/gpu_bench.csv (appended) with machine, versions and
git commit; DIR/gpu_summary.md is a short table.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ["date", "commit", "machine", "versions", "bench", "impl", "precision", "shape",
          "time_ms", "rate", "rate_unit", "ratio", "rel_err", "peak_mem_gb", "notes"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT", os.path.join(ROOT, "bench", "results")))
    p.add_argument("--dry-run", action="store_true", help="tiny sizes (CPU interpreter if no GPU)")
    p.add_argument("--precisions", default="ieee,tf32,bf16")
    p.add_argument("--only", default="matmul,agop,fit,errors",
                   help="comma list of matmul, agop, fit, errors")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    p.add_argument("--ptxas-report", action="store_true",
                   help="only compile every kernel configuration for sm_90a (no GPU needed) and "
                        "record ptxas's registers / spill bytes per configuration")
    p.add_argument("--budget-s", type=float, default=400.0,
                   help="skip the remaining benchmarks once this much time has passed")
    return p.parse_args(argv)


ARGS = parse_args()
import torch  # noqa: E402

if not torch.cuda.is_available() and not ARGS.ptxas_report:
    if not ARGS.dry_run:
        sys.exit("no CUDA device: run with --dry-run to check the script on the CPU")
    os.environ.setdefault("TRITON_INTERPRET", "1")   # before any Triton kernel is defined
if ARGS.ptxas_report and os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("--ptxas-report compiles the kernels: unset TRITON_INTERPRET")

import triton  # noqa: E402

sys.path.insert(0, ROOT)
import rfmfast  # noqa: E402
from rfmfast.ops.agop import reference as agop_ref  # noqa: E402
from rfmfast.ops.agop import triton as agop_tri  # noqa: E402
from rfmfast.ops.kernel_matmul import reference as kmm_ref  # noqa: E402
from rfmfast.ops.kernel_matmul import triton as kmm_tri  # noqa: E402

CUDA = torch.cuda.is_available()
DEV = torch.device("cuda" if CUDA else "cpu")
T0 = time.time()


# ---- bookkeeping ---------------------------------------------------------------------------
def machine() -> str:
    cpu = f"{os.cpu_count()} CPU cores"
    if CUDA:
        p = torch.cuda.get_device_properties(0)
        return f"{p.name} ({p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB); {cpu}"
    if ARGS.ptxas_report:
        return f"no GPU: compiled for sm_90a with triton's bundled ptxas; {cpu}"
    return f"CPU only, Triton interpreter; {cpu}"


def versions() -> str:
    v = (f"python {platform.python_version()}, torch {torch.__version__}, "
         f"triton {triton.__version__}")
    if CUDA:
        v += f", CUDA {torch.version.cuda}"
    return v + f", rfmfast {rfmfast.__version__}"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


ROWS: list[dict] = []
BASE = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "commit": commit(), "machine": machine(), "versions": versions()}
NOTE = ("compile-time resource report, no timing" if ARGS.ptxas_report else
        "dry run: tiny sizes; timings (host clock) are not measurements, errors are"
        if ARGS.dry_run else
        "GPU timed with triton.testing.do_bench (median); host CPU may be shared")


def record(**kw):
    row = {k: "" for k in FIELDS}
    row.update(BASE)
    row.update(kw)
    row["notes"] = NOTE + ("; " + kw["notes"] if kw.get("notes") else "")
    row["row_note"] = kw.get("notes", "")
    ROWS.append(row)
    print(" | ".join(f"{k}={row[k]}" for k in ("bench", "impl", "precision", "time_ms", "rate",
                                               "ratio", "rel_err", "peak_mem_gb")), flush=True)


def over_budget(what: str) -> bool:
    if time.time() - T0 > ARGS.budget_s:
        print(f"skipping {what}: past the {ARGS.budget_s:.0f} s budget", flush=True)
        record(bench=what, impl="skipped", notes="time budget used up")
        return True
    return False


def bench_ms(fn) -> float:
    """Median time of fn() in ms: CUDA events on GPU, the host clock on CPU (dry run)."""
    if CUDA:
        return float(triton.testing.do_bench(fn, warmup=100, rep=1000, return_mode="median"))
    ts = []
    for _ in range(2):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * sorted(ts)[0]


def sync():
    if CUDA:
        torch.cuda.synchronize()


def peak_gb(fn) -> float:
    """Peak device memory (GB) allocated while fn runs, beyond what was allocated before."""
    if not CUDA:
        return float("nan")
    sync()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    sync()
    return (torch.cuda.max_memory_allocated() - before) / 1e9


def rel_err(a, b) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm())


# ---- 1. kernel_matmul ----------------------------------------------------------------------
def blocked_torch_matmul(X, Z, V, bandwidth, block):
    """K(X, Z) @ V in row blocks: distances by addmm, in-place epilogue, then mm."""
    xn = (X * X).sum(1)
    zn = (Z * Z).sum(1)
    out = torch.empty(X.shape[0], V.shape[1], dtype=X.dtype, device=X.device)
    for i in range(0, X.shape[0], block):
        G = torch.addmm(zn[None, :], X[i:i + block], Z.T, alpha=-2.0)
        G.add_(xn[i:i + block, None]).clamp_(min=0).sqrt_().mul_(-1.0 / bandwidth).exp_()
        torch.mm(G, V, out=out[i:i + block])
    return out


def _compiled_block(bandwidth):
    def blk(Xb, xnb, Z, zn, V):
        G = torch.addmm(zn[None, :], Xb, Z.T, alpha=-2.0) + xnb[:, None]
        return torch.exp(G.clamp(min=0).sqrt() * (-1.0 / bandwidth)) @ V
    return torch.compile(blk, dynamic=False)


def bench_kernel_matmul(precisions):
    n, d, t = (300, 64, 8) if ARGS.dry_run else (200_000, 64, 8)
    L = 10.0
    g = torch.Generator(device=DEV).manual_seed(0)
    X = torch.randn(n, d, device=DEV, generator=g)
    Z = torch.randn(n, d, device=DEV, generator=g)
    V = torch.randn(n, t, device=DEV, generator=g)
    block = max(1, min(n, (1 << 30) // n))            # 2^30 entries = 4 GB of float32 per block
    while n % block:                                  # equal blocks: one torch.compile graph
        block -= 1
    shape = f"n=m={n} d={d} t={t}"
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(1))[:64].to(DEV)
    ref = kmm_ref.kernel_matmul(X[idx].double(), Z.double(), V.double(), kernel="laplace",
                                bandwidth=L, M=None)
    entries = float(n) * n
    best = {}
    compiled = None
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        mode = "tf32" if tf32 else "float32"
        impls = [("torch blocked eager", lambda: blocked_torch_matmul(X, Z, V, L, block))]
        if not ARGS.no_compile and CUDA:
            compiled = compiled or _compiled_block(L)
            xn, zn = (X * X).sum(1), (Z * Z).sum(1)

            def run_compiled():
                out = torch.empty(n, t, device=DEV)
                for i in range(0, n, block):
                    out[i:i + block] = compiled(X[i:i + block], xn[i:i + block], Z, zn, V)
                return out
            impls.append(("torch blocked torch.compile", run_compiled))
        for name, fn in impls:
            if over_budget("kernel_matmul baseline"):
                return
            try:
                err = rel_err(fn()[idx], ref)
                ms = bench_ms(fn)
            except Exception as e:  # a baseline that cannot run here is reported, not fatal
                record(bench="kernel_matmul", impl=name, precision=mode, shape=shape,
                       notes=f"failed: {type(e).__name__}: {str(e)[:120]}")
                continue
            best[mode] = min(best.get(mode, float("inf")), ms)
            record(bench="kernel_matmul", impl=name, precision=mode, shape=shape,
                   time_ms=f"{ms:.3f}", rate=f"{entries / ms * 1e3:.3e}",
                   rate_unit="kernel entries/s", rel_err=f"{err:.2e}")
    torch.backends.cuda.matmul.allow_tf32 = False
    for prec in precisions:
        if over_budget("kernel_matmul triton"):
            return
        fn = lambda: kmm_tri.kernel_matmul(X, Z, V, kernel="laplace", bandwidth=L, M=None,  # noqa
                                           precision=prec)
        err = rel_err(fn()[idx], ref)                    # also runs the autotuner once
        ms = bench_ms(fn)
        base = best.get("float32" if prec == "ieee" else "tf32")
        record(bench="kernel_matmul", impl="rfmfast triton", precision=prec, shape=shape,
               time_ms=f"{ms:.3f}", rate=f"{entries / ms * 1e3:.3e}",
               rate_unit="kernel entries/s", ratio=f"{base / ms:.2f}" if base else "",
               rel_err=f"{err:.2e}", peak_mem_gb=f"{peak_gb(fn):.3f}",
               notes="ratio vs fastest blocked PyTorch of the matching matmul precision")


# ---- 2. agop ---------------------------------------------------------------------------------
def xrfm_batch(q: int, n: int) -> int:
    """xRFM 0.4.5's AGOP sample batch for LaplaceKernel on GPU (the 'cheap' rule):
    min(q, 10,000 * free memory / 40 GB)."""
    if not CUDA:
        return q
    free, _ = torch.cuda.mem_get_info()
    return max(1, min(q, int(10_000 * max(free / 40e9, 1e-3))))


def laplace_agop_reimpl(X, Q, alpha, sqrtM, L, eps=1e-10):
    """xRFM 0.4.5 LaplaceKernel(exponent=1).get_agop(x=X, z=Q, coefs=alpha.T, mat=sqrtM),
    re-implemented op for op in plain PyTorch: the sum (not the mean) over queries."""
    xm, zm = X @ sqrtM, Q @ sqrtM
    dists = torch.cdist(xm, zm)
    dists.clamp_(min=0)
    kmat = dists.clone().mul_(-1.0 / L).exp_()
    mask = dists >= eps
    dists.clamp_(min=eps).pow_(-1.0)
    kmat.mul_(dists).mul_(mask).mul_(-1.0 / L)
    coefs = alpha.T
    grads = torch.einsum("li,ij,jd->ljd", coefs, kmat, zm) - \
        torch.einsum("li,ij,id->ljd", coefs, kmat, xm)
    grads = grads @ sqrtM
    grads = grads.reshape(-1, grads.shape[-1])
    return grads.T @ grads


def bench_agop(precisions):
    n, q, d, c = (200, 50, 100, 10) if ARGS.dry_run else (200_000, 20_000, 100, 10)
    L = 10.0
    g = torch.Generator(device=DEV).manual_seed(2)
    X = torch.randn(n, d, device=DEV, generator=g) * 0.5
    alpha = torch.randn(n, c, device=DEV, generator=g) * 1e-2
    Q = X[torch.randperm(n, generator=torch.Generator().manual_seed(3))[:q].to(DEV)]
    A = torch.randn(d, d, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    M64 = A @ A.T / d
    M64 /= M64.max()
    w, U = torch.linalg.eigh(M64)
    sqrtM = ((U * w.clamp(min=0).sqrt()) @ U.T).float().to(DEV)
    M = M64.float().to(DEV)
    shape = f"n={n} q={q} d={d} c={c} full M"
    qs = min(q, 64)                                   # float64 reference on the first queries
    ref = agop_ref.agop(Q[:qs].double(), X.double(), alpha.double(), kernel="laplace",
                        bandwidth=L, M=M64.to(DEV))
    pairs = float(q) * n
    b = xrfm_batch(q, n)
    baselines = []
    try:
        from xrfm.rfm_src.kernels import LaplaceKernel
        import xrfm

        kern = LaplaceKernel(bandwidth=L, exponent=1.0)

        def run_xrfm(Qs=Q):
            out = torch.zeros(d, d, device=DEV)
            for i in range(0, Qs.shape[0], b):
                out += kern.get_agop(x=X, z=Qs[i:i + b], coefs=alpha.T, mat=sqrtM)
            return out / Qs.shape[0]
        baselines.append((f"xrfm {xrfm.__version__} LaplaceKernel.get_agop", run_xrfm))
    except ImportError as e:
        print(f"xrfm not importable ({e}): only the re-implementation of its path runs")

    def run_reimpl(Qs=Q):
        out = torch.zeros(d, d, device=DEV)
        for i in range(0, Qs.shape[0], b):
            out += laplace_agop_reimpl(X, Qs[i:i + b], alpha, sqrtM, L)
        return out / Qs.shape[0]
    baselines.append(("xrfm-0.4.5 get_agop path re-implemented in PyTorch", run_reimpl))
    best = None
    torch.backends.cuda.matmul.allow_tf32 = False        # xRFM's default: float32 matmuls
    for name, fn in baselines:
        if over_budget("agop baseline"):
            return
        try:
            err = rel_err(fn(Q[:qs]), ref)
            ms = bench_ms(fn)
            mem = peak_gb(fn)
        except Exception as e:
            record(bench="agop", impl=name, precision="float32", shape=shape,
                   notes=f"failed: {type(e).__name__}: {str(e)[:120]}")
            continue
        best = ms if best is None else min(best, ms)
        record(bench="agop", impl=name, precision="float32", shape=shape, time_ms=f"{ms:.3f}",
               rate=f"{pairs / ms * 1e3:.3e}", rate_unit="(query, center) pairs/s",
               rel_err=f"{err:.2e}", peak_mem_gb=f"{mem:.3f}",
               notes=f"sample batch {b} (xRFM's rule)")
    for method in agop_tri.METHODS:
        os.environ["RFMFAST_TRITON_AGOP"] = method
        for prec in precisions:
            if over_budget("agop triton"):
                return
            fn = lambda Qs=Q: agop_tri.agop(Qs, X, alpha, kernel="laplace", bandwidth=L,  # noqa
                                            M=M, precision=prec)
            err = rel_err(fn(Q[:qs]), ref)
            fn()                                          # autotune at the full size first
            ms = bench_ms(fn)
            record(bench="agop", impl=f"rfmfast triton ({method})", precision=prec, shape=shape,
                   time_ms=f"{ms:.3f}", rate=f"{pairs / ms * 1e3:.3e}",
                   rate_unit="(query, center) pairs/s", ratio=f"{best / ms:.2f}" if best else "",
                   rel_err=f"{err:.2e}", peak_mem_gb=f"{peak_gb(fn):.3f}",
                   notes="ratio vs the fastest float32 xRFM-path baseline")
    os.environ.pop("RFMFAST_TRITON_AGOP", None)


# ---- 3. RFM fit ------------------------------------------------------------------------------
def bench_fit():
    if over_budget("rfm fit"):
        return
    try:
        from rfmfast import RFMRegressor
    except (ImportError, AttributeError) as e:
        record(bench="rfm_fit", impl="skipped", notes=f"RFMRegressor not importable: {e}")
        return
    n, d = (400, 50) if ARGS.dry_run else (100_000, 50)
    rng = torch.Generator().manual_seed(5)
    X = (torch.randn(n + n // 10, d, generator=rng) * 0.5).numpy()
    y = X[:, 0] * X[:, 1] * (X[:, 5] > 0)
    Xtr, ytr, Xte, yte = X[:n], y[:n], X[n:], y[n:]
    kw = {"device": "cuda"} if CUDA else {}
    try:
        model = RFMRegressor(**kw)
        sync()
        t = time.perf_counter()
        model.fit(Xtr, ytr)
        sync()
        sec = time.perf_counter() - t
        mse = float(((model.predict(Xte) - yte) ** 2).mean())
    except Exception as e:
        record(bench="rfm_fit", impl="rfmfast RFMRegressor", shape=f"n={n} d={d}",
               notes=f"failed: {type(e).__name__}: {str(e)[:160]}")
        return
    params = {k: v for k, v in model.get_params().items()
              if k in ("kernel", "iters", "solver", "backend", "dtype", "agop_samples")}
    record(bench="rfm_fit", impl="rfmfast RFMRegressor", precision=os.environ.get(
        "RFMFAST_TRITON_PRECISION", "ieee"), shape=f"n={n} d={d}", time_ms=f"{sec * 1e3:.0f}",
        rate=f"{n / sec:.3e}", rate_unit="training points/s (wall clock, end to end)",
        rel_err="", notes=f"test MSE {mse:.5f}; {params}; target: under 60 s")


# ---- 4. precision errors ----------------------------------------------------------------------
def bench_errors(precisions):
    """Relative error of each op against float64 per precision, next to plain PyTorch's:
    "ieee", the reference run in float32; "tf32"/"bf16", the reference on inputs rounded to
    that precision, and for kernel_matmul also K and V rounded before the product (what a
    PyTorch matmul in that precision does). Small sizes: this runs in the interpreter too."""
    from rfmfast.ops import _triton_common as TC
    from rfmfast.ops.kernel_matrix import reference as km_ref
    from rfmfast.ops.kernel_matrix import triton as km_tri

    n, d, t, q, c = 256, 64, 8, 64, 3
    L = 10.0
    g = torch.Generator(device=DEV).manual_seed(6)
    X = torch.randn(n, d, device=DEV, generator=g)
    Z = torch.randn(n, d, device=DEV, generator=g)
    V = torch.randn(n, t, device=DEV, generator=g)
    alpha = torch.randn(n, c, device=DEV, generator=g)
    Q = X[:q].clone()

    def rnd(u, p):
        return u if p == "ieee" else TC.round_to(u, p).double()

    def plain_km(p, kernel):
        return km_ref.kernel_matrix(rnd(X, p), rnd(Z, p), kernel=kernel, bandwidth=L, M=None)

    def plain_kmm(p, kernel):
        K = plain_km(p, kernel)
        if p != "ieee":
            K = rnd(K.float(), p)
        return K @ rnd(V, p)

    def plain_agop(p, kernel):
        return agop_ref.agop(rnd(Q, p), rnd(X, p), rnd(alpha, p), kernel=kernel, bandwidth=L,
                             M=None)

    for kernel in ("laplace", "gaussian"):
        cases = [
            ("kernel_matrix", lambda p: km_tri.kernel_matrix(X, Z, kernel=kernel, bandwidth=L,
                                                             M=None, precision=p),
             km_ref.kernel_matrix(X.double(), Z.double(), kernel=kernel, bandwidth=L, M=None),
             plain_km),
            ("kernel_matmul", lambda p: kmm_tri.kernel_matmul(X, Z, V, kernel=kernel,
                                                              bandwidth=L, M=None, precision=p),
             kmm_ref.kernel_matmul(X.double(), Z.double(), V.double(), kernel=kernel,
                                   bandwidth=L, M=None),
             plain_kmm),
            ("agop", lambda p: agop_tri.agop(Q, X, alpha, kernel=kernel, bandwidth=L, M=None,
                                             precision=p),
             agop_ref.agop(Q.double(), X.double(), alpha.double(), kernel=kernel, bandwidth=L,
                           M=None),
             plain_agop),
        ]
        for op, tri, ref, plain_fn in cases:
            for prec in precisions:
                if over_budget("precision errors"):
                    return
                err = rel_err(tri(prec), ref)
                plain = rel_err(plain_fn(prec, kernel), ref)
                record(bench="precision_error", impl=f"{op} {kernel}", precision=prec,
                       shape=f"n={n} d={d} t={t} q={q} c={c}", rel_err=f"{err:.2e}",
                       ratio=f"{err / plain:.2f}",
                       notes=f"plain PyTorch in {prec}: {plain:.2e}; ratio = ours / plain")


# ---- 5. ptxas resource report (no GPU needed) ---------------------------------------------------
def ptxas_report():
    """Compile each autotune configuration of each kind of tile for sm_90a and record ptxas's
    registers per thread and spill-store bytes (triton's bundled ptxas; the newest one that
    reads the PTX)."""
    import re
    import tempfile

    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from rfmfast.ops.kernel_matrix import triton as km_tri

    bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    tools = [os.path.join(bindir, f) for f in ("ptxas-blackwell", "ptxas")
             if os.path.exists(os.path.join(bindir, f))]

    def resources(ptx):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "k.ptx")
            with open(src, "w") as f:
                f.write(ptx)
            for tool in tools:
                res = subprocess.run([tool, "-arch=sm_90a", "-v", src, "-o",
                                      os.path.join(tmp, "k.cubin")], capture_output=True, text=True)
                txt = res.stdout + res.stderr
                regs = re.search(r"Used (\d+) registers", txt)
                if regs:
                    spill = re.search(r"(\d+) bytes spill stores", txt)
                    return int(regs.group(1)), int(spill.group(1)) if spill else 0
        return None, None

    def one(name, fn, ptrs, ints, const, dt, cfg):
        sig = {a: "*" + dt for a in ptrs}
        sig.update({a: "i32" for a in ints})
        const = dict(const, **cfg.kwargs)
        sig.update({k: "constexpr" for k in const})
        k = triton.compile(ASTSource(fn, sig, const), target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages})
        regs, spill = resources(k.asm["ptx"])
        wgmma = k.asm["ptx"].count("wgmma.mma_async")
        record(bench="ptxas_sm90a", impl=name, precision=dt,
               shape=f"{cfg.kwargs} warps={cfg.num_warps} stages={cfg.num_stages}",
               rate=f"{regs}", rate_unit="registers/thread",
               notes=f"spill stores {spill} B; wgmma instructions {wgmma}")

    kmm = (["p_ptr", "y_ptr", "pn_ptr", "yn_ptr", "v_ptr", "x_ptr", "a_ptr", "out_ptr",
            "consts_ptr"], ["q", "n", "r", "t", "d", "c"])
    for mode, cfgs in kmm_tri._CONFIGS.items():
        tc = mode.startswith("tc")
        for cfg in cfgs:
            for prec, dt in ([(1, "fp32"), (2, "fp32")] if tc else
                             [(0, "fp32"), (0, "fp64")] if mode.startswith("ieee") else
                             [(0, "fp32")]):
                const = dict(INTERP=False, DIRECT=mode == "direct", KERNEL=0, PREC=prec,
                             WEIGHT=mode.endswith("wide"), VALUES_FROM_X=mode.endswith("wide"),
                             P_RESIDENT=tc, BLOCK_K=64 if tc else 4 if mode == "direct" else 16)
                if not mode.endswith("wide"):
                    const["BLOCK_T"] = 16
                one(f"kernel_matmul {mode} prec={prec}", kmm_tri._fused_kmm, *kmm, const, dt, cfg)
    km = (["p_ptr", "y_ptr", "pn_ptr", "yn_ptr", "out_ptr", "consts_ptr"], ["q", "n", "r"])
    for mode, cfgs in km_tri._CONFIGS.items():
        for cfg in cfgs:
            for sym in (False, True):
                const = dict(KERNEL=2 if mode == "direct" else 0, DIRECT=mode == "direct",
                             SYMMETRIC=sym, PREC=1 if mode == "tc" else 0, INTERP=False,
                             WEIGHT=False,
                             BLOCK_K=4 if mode == "direct" else 32 if mode == "tc" else 16)
                one(f"kernel_matrix {mode} symmetric={sym}", km_tri._kernel_matrix, *km, const,
                    "fp32", cfg)
    ag = (["p_ptr", "y_ptr", "pn_ptr", "yn_ptr", "a_ptr", "h_ptr", "consts_ptr"],
          ["q", "n", "r", "c"])
    for cfg in agop_tri._DIRECT_CONFIGS:
        for dt in ("fp32", "fp64"):
            one("direct_grads laplace", agop_tri._direct_grads.fn, *ag,
                dict(KERNEL=0, BLOCK_K=4, BLOCK_R=8), dt, cfg)


# ---- output ------------------------------------------------------------------------------------
def write(out_dir: str):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "gpu_bench.csv")
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        for r in ROWS:
            w.writerow({k: r.get(k, "") for k in FIELDS})
    md = [f"# rfmfast GPU benchmarks ({BASE['date']} UTC, commit {BASE['commit']})", "",
          f"Machine: {BASE['machine']}  ", f"Versions: {BASE['versions']}  ", f"Notes: {NOTE}", "",
          "| bench | impl | precision | shape | time (ms) | rate | ratio | rel err | peak GB "
          "| note |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in ROWS:
        rate = f"{r.get('rate', '')} {r.get('rate_unit', '')}".strip()
        md.append(f"| {r.get('bench', '')} | {r.get('impl', '')} | {r.get('precision', '')} | "
                  f"{r.get('shape', '')} | {r.get('time_ms', '')} | {rate} | {r.get('ratio', '')} "
                  f"| {r.get('rel_err', '')} | {r.get('peak_mem_gb', '')} "
                  f"| {r.get('row_note', '')} |")
    md += ["", "Targets (issue 5, H200): kernel_matmul >= 1e12 entries/s and >= 10x blocked "
           "PyTorch; agop >= 10x xRFM's PyTorch path; RFM fit n=100,000 d=50 under 60 s."]
    with open(os.path.join(out_dir, "gpu_summary.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


def _terminated(signum, frame):
    raise SystemExit(f"stopped by signal {signum}; writing the rows measured so far")


def main():
    signal.signal(signal.SIGTERM, _terminated)
    precisions = [p for p in ARGS.precisions.split(",") if p]
    only = set(ARGS.only.split(","))
    print(f"{BASE['machine']}; {BASE['versions']}; commit {BASE['commit']}", flush=True)
    if ARGS.ptxas_report:
        try:
            ptxas_report()
        finally:
            write(ARGS.out)
        return
    try:
        if "matmul" in only:
            bench_kernel_matmul(precisions)
        if "fit" in only:                  # before the agop, the longest: each target measured
            bench_fit()
        if "agop" in only:
            bench_agop(precisions)
        if "errors" in only:
            bench_errors(precisions)
    finally:
        write(ARGS.out)


if __name__ == "__main__":
    main()
