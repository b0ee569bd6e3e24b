"""lin-RFM on ten million ratings on a GPU: MovieLens-10M-shaped synthetic ratings (70,000 users x
10,700 items, rank 10, power-law counts; rfmfast.datasets.synthetic_ratings), a seeded 2% test
set, LinRFMCompleter(device="cuda", dtype=float32) with its defaults and verbose output.

Prints, and writes as one JSON line to --out: fit seconds (CUDA synchronized), sweeps, the test
RMSE, the RMSE of the estimator's own offsets model, torch.cuda.max_memory_allocated, the GPU
name and the commit. Run by bench/gpu_check.sh; by hand:

    python bench/gpu_ratings_10m.py --out results.jsonl
    python bench/gpu_ratings_10m.py --shape 3000 2000 200000 --device cpu   # a small check
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

import numpy as np
import torch

from rfmfast import LinRFMCompleter
from rfmfast.datasets import split_ratings, synthetic_ratings


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(70_000, 10_700, 10_000_000))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--out", default=None, help="append the result as a JSON line here")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device visible to torch")
        return 2
    n, d, nnz = args.shape
    t0 = time.perf_counter()
    R = synthetic_ratings(n, d, nnz, rank=10, min_per_user=20, seed=0)
    test = split_ratings(len(R.values), 0.02, seed=0)
    tr = ~test
    print(f"data: {n} x {d}, {nnz} ratings in {time.perf_counter() - t0:.1f} s", flush=True)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    est = LinRFMCompleter(device=args.device, dtype=args.dtype, verbose=True).fit(
        (R.rows[tr], R.cols[tr], R.values[tr]), shape=R.shape
    )
    if cuda:
        torch.cuda.synchronize()
    fit_s = time.perf_counter() - t0
    rt, ct, vt = R.rows[test], R.cols[test], R.values[test]
    pred = np.clip(np.asarray(est.predict(rt, ct)), 0.5, 5.0)
    offsets = np.clip(est.mu_ + est.row_bias_[rt] + est.col_bias_[ct], 0.5, 5.0)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    rec = {
        "case": f"synthetic {n} x {d}, {nnz} ratings, 98/2",
        "device": torch.cuda.get_device_name() if cuda else args.device,
        "dtype": args.dtype,
        "fit_seconds": round(fit_s, 2),
        "sweeps": est.n_iter_,
        "best_sweep": est.best_iter_,
        "stop_reason": est.stop_reason_,
        "orientation": est.orientation_,
        "test_rmse": round(float(np.sqrt(np.mean((pred - vt) ** 2))), 4),
        "offsets_rmse": round(float(np.sqrt(np.mean((offsets - vt) ** 2))), 4),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "commit": commit,
    }
    print(json.dumps(rec), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
