"""Cost of the distance rule: the C++ kernels of a build before the rule against this one, side
by side in one process on every ISA path both can run (needs an old build of this source tree).

    python bench/compare_distance_rule.py OLD_SO [--out DIR] [--repeats 3]

OLD_SO is the rfmfast/_C*.so of a build before the rule (commit 2b43764, built in place from
`git archive 2b43764`). The old kernels are called through their own thin glue (map, pack,
kernel); this build through the public ops with backend="cpu" (which adds the input checks,
timed alone in the last row). Workloads: kernel_matmul n = m = 20,000, d = 50 (t = 1 and
t = 16), kernel_matrix of 8,000 points (d = 50, symmetric), kernel_grads q = 2,000 on n = 20,000
(d = 50, c = 10). Best of --repeats, interleaved, by rfmfast.bench's runner; rows in the one
schema (bench "distance_rule") appended to DIR/rfmfast_bench.csv (default bench/results).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import rfmfast  # noqa: E402
from rfmfast.bench import schema  # noqa: E402
from rfmfast.bench.runner import Benchmark, Case, Ctx, Impl, run_case  # noqa: E402

L, EPS = 10.0, 1e-10  # the bandwidth; the self-pair threshold of the old kernels


def load_old(path):
    spec = importlib.util.spec_from_file_location("_C", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def old_matmul(old, X, Z, V, nt):
    f = lambda n: getattr(old, n + "_f32")  # noqa: E731
    Xt, xn = f("prepare")(X, None, 0, nt)
    Zt, zn = f("prepare")(Z, None, 0, nt)
    Zp = f("pack_points")(Zt)
    t = V.shape[1]
    Vp, Vt = (None, np.ascontiguousarray(V.T)) if t <= 4 else (f("pack_values")(V), None)
    out = np.empty((X.shape[0], t), np.float32)
    f("kernel_matmul")(Xt, xn, Zp, zn, Z.shape[0], 0, L, Vp, Vt, t, out, nt)
    return out


def old_matrix(old, X, nt):
    f = lambda n: getattr(old, n + "_f32")  # noqa: E731
    Xt, xn = f("prepare")(X, None, 0, nt)
    out = np.empty((X.shape[0], X.shape[0]), np.float32)
    f("kernel_matrix")(Xt, xn, f("pack_points")(Xt), xn, X.shape[0], 0, L, 1, out, nt)
    return out


def old_grads(old, Q, X, a, nt):
    f = lambda n: getattr(old, n + "_f32")  # noqa: E731
    Qt, qn = f("prepare")(Q, None, 0, nt)
    Xt, xn = f("prepare")(X, None, 0, nt)
    n, d = X.shape
    c = a.shape[1]
    Vm = np.concatenate([(a[:, :, None] * X[:, None, :]).reshape(n, c * d), a], axis=1)
    H = np.empty((Q.shape[0], c, d), np.float32)
    f("kernel_grads")(
        Qt,
        qn,
        Q,
        f("pack_points")(Xt),
        xn,
        n,
        c,
        0,
        L,
        -1.0 / L,
        EPS,
        f("pack_values")(np.ascontiguousarray(Vm)),
        H,
        nt,
    )
    return H


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old_so")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    old = load_old(a.old_so)
    try:
        from rfmfast import _C as new
    except ImportError as e:
        sys.exit(f"this build has no C++ extension ({e}): build it first (pip install -e .)")
    nt = torch.get_num_threads()
    g = torch.Generator().manual_seed(0)
    X = torch.randn(20000, 50, generator=g)
    V1, V16 = torch.randn(20000, 1, generator=g), torch.randn(20000, 16, generator=g)
    K8 = X[:8000].contiguous()
    Q = X[:2000].contiguous()
    al = torch.randn(20000, 10, generator=g)
    Xn, V1n, V16n, K8n, Qn, aln = (t.numpy() for t in (X, V1, V16, K8, Q, al))
    work = {
        "kernel_matmul t=1": (
            lambda: old_matmul(old, Xn, Xn, V1n, nt),
            lambda: rfmfast.kernel_matmul(X, X, V1, bandwidth=L, backend="cpu"),
        ),
        "kernel_matmul t=16": (
            lambda: old_matmul(old, Xn, Xn, V16n, nt),
            lambda: rfmfast.kernel_matmul(X, X, V16, bandwidth=L, backend="cpu"),
        ),
        "kernel_matrix n=8000 sym": (
            lambda: old_matrix(old, K8n, nt),
            lambda: rfmfast.kernel_matrix(K8, bandwidth=L, backend="cpu"),
        ),
        "kernel_grads q=2000 c=10": (
            lambda: old_grads(old, Qn, Xn, aln, nt),
            lambda: rfmfast.kernel_grads(Q, X, al, bandwidth=L, backend="cpu"),
        ),
    }
    both = [i for i in new.available_isas().split(",") if i in old.available_isas().split(",")]
    bench = Benchmark(
        "distance_rule",
        "cost of the distance rule: old and new C++ kernels",
        "seconds",
        lambda size, ctx: [],
    )
    ctx = Ctx(size="full", device=torch.device("cpu"), repeats=a.repeats, timeout=600.0, slow_s=1e9)
    base = {
        "run": schema.new_run_id(),
        "date": schema.now(),
        "size": "full",
        **schema.facts(torch.device("cpu")),
    }
    out = Path(a.out) / schema.CSV_NAME
    for isa in both:
        old.set_isa(isa)
        new.set_isa(isa)
        for name, (f_old, f_new) in work.items():
            case = Case(
                f"{name}, {isa}",
                {"workload": name, "isa": isa},
                lambda ctx: {},
                [
                    Impl(
                        "C++ kernels before the distance rule (2b43764)",
                        "baseline",
                        lambda data, f=f_old: f(),
                        precision="float32",
                    ),
                    Impl(
                        "C++ kernels with the distance rule",
                        "rfmfast",
                        lambda data, f=f_new: f(),
                        precision="float32",
                        notes="public op, backend='cpu' (input checks included)",
                    ),
                ],
            )
            rows = run_case(bench, case, ctx, dict(base, isa=isa))
            schema.write_rows(out, rows)
            for r in rows:
                print(
                    f"{isa:8s} {name:26s} {r['impl']:48s} {r.get('seconds', 0):.4f} s "
                    f"{r.get('speedup_vs_baseline', '') or ''}",
                    flush=True,
                )
    print(f"rows appended to {out}")


if __name__ == "__main__":
    sys.exit(main())
