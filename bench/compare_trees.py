"""Time rfmfast's public ops, solves and estimators in one process, for the tree on sys.path.

    PYTHONPATH=<tree> python bench/compare_trees.py OUT.json   (cwd outside the trees)

Used to compare two states of the code on one machine: run it alternately for each tree,
twice, and compare the best-of-3 times; the spread between a tree's own runs is the noise.
"""

import json
import sys
import time

import numpy as np
import torch

import rfmfast


def best(f, k=3):
    f()
    ts = []
    for _ in range(k):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main(out):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(20000, 50, generator=g)
    A = torch.randn(50, 50, generator=g) / 50**0.5
    M = A @ A.T + 0.1 * torch.eye(50)
    V1 = torch.randn(20000, 1, generator=g)
    V16 = torch.randn(20000, 16, generator=g)
    al = torch.randn(20000, 10, generator=g)
    X8 = X[:8000].contiguous()
    Q = X[:2000].contiguous()
    X20 = X[:5000, :20].contiguous()
    a1 = al[:5000, :1].contiguous()
    Xs, ys = X[:4000, :20].contiguous(), torch.randn(4000, 1, generator=g)
    Xr = torch.randn(3000, 20, generator=g)
    yr = Xr[:, 0] * Xr[:, 1] + 0.1 * torch.randn(3000, generator=g)
    rng = np.random.default_rng(0)
    U, W = rng.standard_normal((600, 5)), rng.standard_normal((5, 400))
    Y = (U @ W).astype(np.float32)
    mask = rng.random(Y.shape) < 0.3
    cases = {
        "kernel_matrix sym 8000x50 laplace": lambda: rfmfast.kernel_matrix(X8, bandwidth=10.0),
        "kernel_matrix 8000x8000 gaussian M": lambda: rfmfast.kernel_matrix(
            X8, X8[:].clone(), kernel="gaussian", bandwidth=10.0, M=M
        ),
        "kernel_matmul 20000^2 d50 t1 M": lambda: rfmfast.kernel_matmul(X, X, V1, M=M),
        "kernel_matmul 20000^2 d50 t16": lambda: rfmfast.kernel_matmul(X, X, V16),
        "kernel_grads q2000 n20000 c10 M": lambda: rfmfast.kernel_grads(Q, X, al, M=M),
        "agop q2000 n20000 c10 M": lambda: rfmfast.agop(Q, X, al, M=M),
        "agop diag centered q2000 n20000 c10": lambda: rfmfast.agop(
            Q, X, al, diag=True, centering=True
        ),
        "agop l1 q1000 n5000 d20": lambda: rfmfast.agop(
            X20[:1000], X20, a1, kernel="l1_laplace", M=torch.eye(20) * 2
        ),
        "kernel_solve cholesky n4000": lambda: rfmfast.kernel_solve(Xs, ys, solver="cholesky"),
        "RFMRegressor fit n3000 iters2": lambda: rfmfast.RFMRegressor(
            iters=2, solver="cholesky"
        ).fit(Xr, yr),
        "LinRFMCompleter fit 600x400": lambda: rfmfast.LinRFMCompleter(
            max_iter=20, dtype="float32"
        ).fit(np.where(mask, Y, np.nan)),
    }
    res = {}
    for name, f in cases.items():
        try:
            res[name] = best(f)
        except Exception as e:  # noqa: BLE001
            res[name] = f"error: {type(e).__name__}: {e}"
        print(f"{name:42s} {res[name]}", flush=True)
    res["_meta"] = {
        "rfmfast": rfmfast.__file__,
        "threads": torch.get_num_threads(),
        "isa": rfmfast.available_backends()["cpu"][1],
    }
    json.dump(res, open(out, "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
