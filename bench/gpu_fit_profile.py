"""Where the GPU RFM fit spends its time: RFMRegressor.fit at n = 100,000, d = 50 (the CUDA rfm
benchmark's fit), cold (first in the process: Triton compilation and autotuning included) and
warm (again, same shapes), with the per-iteration solve / AGOP seconds from history_, then the
pieces of one Cholesky solve timed alone (kernel matrix, factorization, the two triangular
solves).

    python bench/gpu_fit_profile.py [--n 100000] [--out DIR]     # a CUDA machine
    python bench/gpu_fit_profile.py --n 400 --dry-run            # anywhere (CPU, tiny)

Prints a short table and writes DIR/fit_profile.txt, headed by the machine facts of
rfmfast.bench.schema (GPU, CPU, versions, commit). Timings: host clock around synchronized
regions (the fit is a host-driven loop). It times an internal step (the in-place Cholesky),
hence it lives in the source tree; the end-to-end fit is `rfmfast bench --device cuda --only rfm`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=100_000)
p.add_argument("--out", default=os.environ.get("OUT", "."))
p.add_argument("--dry-run", action="store_true")
args = p.parse_args()
CUDA = torch.cuda.is_available()
if not CUDA and not args.dry_run:
    sys.exit("no CUDA device: use --dry-run")
dev = "cuda" if CUDA else "cpu"

from rfmfast import RFMRegressor, kernel_matrix  # noqa: E402
from rfmfast.bench import schema  # noqa: E402
from rfmfast.ops.cholesky import cholesky_inplace  # noqa: E402

lines = []


def out(s):
    print(s, flush=True)
    lines.append(s)
    with open(os.path.join(args.out, "fit_profile.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def sync():
    if CUDA:
        torch.cuda.synchronize()


n, d = args.n, 50
g = torch.Generator().manual_seed(5)
X = (torch.randn(n + n // 10, d, generator=g) * 0.5).numpy()
y = X[:, 0] * X[:, 1] * (X[:, 5] > 0)
Xtr, ytr, Xte, yte = X[:n], y[:n], X[n:], y[n:]
out(
    f"# RFM fit profile, n = {n}, d = {d}, device {dev}"
    + (f" ({torch.cuda.get_device_name(0)})" if CUDA else "")
)
_facts = schema.facts(torch.device(dev))
out(
    f"# {_facts['machine']}; {_facts['cpu']}; torch {_facts['torch']}; {_facts['versions']}; "
    f"rfmfast {_facts['rfmfast']} ({_facts['commit']})"
)
for label in ("cold", "warm"):
    m = RFMRegressor(device=dev)
    sync()
    t = time.perf_counter()
    m.fit(Xtr, ytr)
    sync()
    sec = time.perf_counter() - t
    mse = float(((m.predict(Xte) - yte) ** 2).mean())
    solve = sum(r["solve_s"] for r in m.history_)
    agop = sum(r["agop_s"] or 0 for r in m.history_)
    out(
        f"fit {label}: {sec:.2f} s (solves {solve:.2f} s, AGOPs {agop:.2f} s, rest "
        f"{sec - solve - agop:.2f} s), test MSE {mse:.5f}"
    )
    out(
        "  per iteration: "
        + ", ".join(f"{r['solve_s']:.2f}/{(r['agop_s'] or 0):.2f}" for r in m.history_)
        + " (solve/AGOP s)"
    )
    del m
    if CUDA:
        torch.cuda.empty_cache()

# the pieces of one Cholesky solve, warm, M = I
Xt = torch.from_numpy(Xtr).to(dev)
Y = torch.from_numpy(ytr).to(dev)[:, None]
K = torch.empty(n, n, device=dev)
for rep in range(2):
    sync()
    t0 = time.perf_counter()
    kernel_matrix(Xt, Xt, bandwidth=10.0, out=K)
    K.diagonal().add_(1e-3)
    sync()
    t1 = time.perf_counter()
    info = cholesky_inplace(K)
    sync()
    t2 = time.perf_counter()
    z = torch.linalg.solve_triangular(K, Y, upper=False)
    sync()
    t3 = time.perf_counter()
    a = torch.linalg.solve_triangular(K.mT, z, upper=True)
    sync()
    t4 = time.perf_counter()
    out(
        f"pieces (run {rep}): kernel_matrix {t1 - t0:.3f} s, cholesky {t2 - t1:.3f} s "
        f"({n**3 / 3 / (t2 - t1) / 1e12:.1f} TFLOP/s, info {info}), L solve {t3 - t2:.3f} s, "
        f"L^T solve {t4 - t3:.3f} s"
    )
