"""Cost of the distance rule: the C++ kernels of an earlier build against this one, side by side
in one process, on every ISA path both can run.

    python bench/compare_distance_rule.py OLD_SO [--out CSV]

OLD_SO is the rfmfast/_C*.so of a build before the rule (e.g. of commit 2b43764, built in place
from `git archive 2b43764`). Both are called through their own thin glue (map, pack, kernel), so
the figures compare kernels and point preparation, not Python validation (timed separately:
ops._common.prepare). Workloads: kernel_matmul n = m = 20,000, d = 50 (t = 1 and t = 16),
kernel_matrix of 8,000 points (d = 50, symmetric), kernel_grads q = 2,000 on n = 20,000
(d = 50, c = 10). Best of 3, interleaved.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
import time

import numpy as np
import torch

from rfmfast import _C as new
from rfmfast.kernels import EPS, grad_scale
from rfmfast.ops import _common, _cpu_common as cc


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
    f("kernel_matmul")(Xt, xn, Zp, zn, Z.shape[0], 0, 10.0, Vp, Vt, t, out, nt)
    return out


def old_matrix(old, X, nt):
    f = lambda n: getattr(old, n + "_f32")  # noqa: E731
    Xt, xn = f("prepare")(X, None, 0, nt)
    out = np.empty((X.shape[0], X.shape[0]), np.float32)
    f("kernel_matrix")(Xt, xn, f("pack_points")(Xt), xn, X.shape[0], 0, 10.0, 1, out, nt)
    return out


def old_grads(old, Q, X, a, nt):
    f = lambda n: getattr(old, n + "_f32")  # noqa: E731
    Qt, qn = f("prepare")(Q, None, 0, nt)
    Xt, xn = f("prepare")(X, None, 0, nt)
    n, d = X.shape
    c = a.shape[1]
    Vm = np.concatenate([(a[:, :, None] * X[:, None, :]).reshape(n, c * d), a], axis=1)
    H = np.empty((Q.shape[0], c, d), np.float32)
    f("kernel_grads")(Qt, qn, Q, f("pack_points")(Xt), xn, n, c, 0, 10.0, grad_scale("laplace", 10.0),
                      EPS, f("pack_values")(np.ascontiguousarray(Vm)), H, nt)
    return H


def best(fn, reps=3):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old_so")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    old = load_old(a.old_so)
    nt = torch.get_num_threads()
    g = torch.Generator().manual_seed(0)
    X = torch.randn(20000, 50, generator=g)
    V1, V16 = torch.randn(20000, 1, generator=g), torch.randn(20000, 16, generator=g)
    K8 = X[:8000].contiguous()
    Q = X[:2000].contiguous()
    al = torch.randn(20000, 10, generator=g)
    Xn, V1n, V16n, K8n, Qn, aln = (t.numpy() for t in (X, V1, V16, K8, Q, al))
    work = {
        "kernel_matmul t=1": (lambda: old_matmul(old, Xn, Xn, V1n, nt),
                              lambda: cc.kernel_matmul_op.impl(X, X, V1, "laplace", 10.0, None)),
        "kernel_matmul t=16": (lambda: old_matmul(old, Xn, Xn, V16n, nt),
                               lambda: cc.kernel_matmul_op.impl(X, X, V16, "laplace", 10.0, None)),
        "kernel_matrix n=8000 sym": (lambda: old_matrix(old, K8n, nt),
                                     lambda: cc.kernel_matrix_op.impl(K8, K8, "laplace", 10.0,
                                                                      None, True)),
        "kernel_grads q=2000 c=10": (lambda: old_grads(old, Qn, Xn, aln, nt),
                                     lambda: cc.kernel_grads_op.impl(Q, X, al, "laplace", 10.0,
                                                                     None)),
    }
    isas = [i for i in new.available_isas().split(",") if i in old.available_isas().split(",")]
    rows = []
    for isa in isas:
        old.set_isa(isa)
        new.set_isa(isa)
        for name, (f_old, f_new) in work.items():
            f_old(), f_new()  # warm up
            t_old, t_new = [], []
            for _ in range(3):
                t_old.append(best(f_old, 1))
                t_new.append(best(f_new, 1))
            rows.append(dict(isa=isa, threads=nt, workload=name, before_s=f"{min(t_old):.4f}",
                             after_s=f"{min(t_new):.4f}",
                             after_over_before=f"{min(t_new) / min(t_old):.3f}"))
            print(rows[-1], flush=True)
    t_val = best(lambda: _common.prepare("kernel_matmul", "cpu", "laplace", 10.0, None,
                                         {"X": X, "Z": X, "V": V1}))
    print(f"validation (ops._common.prepare, X = Z = 20,000 x 50): {t_val:.4f} s", flush=True)
    if a.out:
        with open(a.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
