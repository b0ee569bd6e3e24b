"""Accuracy of every op on data far from the origin and on near-duplicate points.

For each op, backend, dtype and offset c, the inputs are X + c, Z + c (X, Z standard normal, d = 50;
"near-dup": Z = X + 4e-4 noise, no offset), rounded once to the dtype; the truth is the float64
reference on those same rounded inputs. Reported: the relative Frobenius error and, for the kernel
matrix, the max absolute error. The acceptance rule of the distance issue: every backend within
2x the reference backend's error on the same inputs.

    python bench/offset_accuracy.py [--backends cpu,reference] [--out bench/results/offset_accuracy.csv]
RFMFAST_CPU_ISA=avx2|generic picks the C++ code path.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys

import torch

import rfmfast


def cases(dtype, n=300, m=257, d=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    Z = torch.randn(m, d, generator=g, dtype=torch.float64)
    for off in (0.0, 1e2, 1e3, 1e4):
        yield f"offset {off:g}", (X + off).to(dtype), (Z + off).to(dtype)
    Zn = (X[:m] + 4e-4 * torch.randn(m, d, generator=g, dtype=torch.float64) / d ** 0.5)
    yield "near-dup 4e-4", X.to(dtype), Zn.to(dtype)


def rel(a, b):
    a, b = a.to(torch.float64), b.to(torch.float64)
    return float((a - b).norm() / b.norm().clamp(min=1e-300))


def run(op, X, Z, backend, kernel, M):
    g = torch.Generator().manual_seed(1)
    V = torch.randn(Z.shape[0], 3, generator=g, dtype=torch.float64).to(X.dtype)
    kw = dict(kernel=kernel, bandwidth=10.0 if kernel != "gaussian" else 5.0, M=M, backend=backend)
    if op == "kernel_matrix":
        return rfmfast.kernel_matrix(X, Z, **kw)
    if op == "kernel_matmul":
        return rfmfast.kernel_matmul(X, Z, V, **kw)
    if op == "kernel_grads":
        return rfmfast.kernel_grads(X, Z, V, **kw)
    return rfmfast.agop(X, Z, V, **kw)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="cpu,reference")
    ap.add_argument("--kernels", default="laplace,gaussian,l1_laplace")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    rows = []
    isa = rfmfast._C.isa() if getattr(rfmfast, "_C", None) is not None else "-"
    for dtype in (torch.float32, torch.float64):
        for name, X, Z in cases(dtype):
            for kernel in a.kernels.split(","):
                for op in ("kernel_matrix", "kernel_matmul", "kernel_grads", "agop"):
                    truth = run(op, X.double(), Z.double(), "reference", kernel, None)
                    for backend in a.backends.split(","):
                        try:
                            out = run(op, X, Z, backend, kernel, None)
                            err = rel(out, truth)
                            mx = float((out.double() - truth).abs().max())
                        except Exception as e:  # report, keep going
                            err, mx = float("nan"), f"{type(e).__name__}"
                        rows.append(dict(dtype=str(dtype).split(".")[1], case=name, kernel=kernel,
                                         op=op, backend=backend, isa=isa, rel_err=f"{err:.3g}",
                                         max_abs=mx if isinstance(mx, str) else f"{mx:.3g}"))
    w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
