"""`rfmfast complete RATINGS`: lin-RFM completion of a MovieLens ratings file.

Holds out a seeded random ``--test-fraction`` of the ratings, fits LinRFMCompleter on the rest
(the ridge and stopping are chosen on a further held-out part of those, never on the test set),
prints one line per sweep, then the test RMSE and the time, and writes the test predictions
(user, item, rating, prediction) as CSV to ``--out``.
"""
from __future__ import annotations

import time

import numpy as np


def run(args) -> int:
    import torch

    from ..datasets import load_movielens, split_ratings
    from ..models.linrfm import LinRFMCompleter

    t0 = time.perf_counter()
    data = load_movielens(args.ratings)
    test = split_ratings(len(data.values), args.test_fraction, args.seed)
    train = ~test
    n, d = data.shape
    print(f"{args.ratings}: {len(data.values)} ratings, {n} users x {d} items; "
          f"{int(train.sum())} train, {int(test.sum())} test", flush=True)
    est = LinRFMCompleter(alpha=args.alpha, bias=args.bias, holdout=args.holdout,
                          max_iter=args.max_iter, device=args.device,
                          dtype=torch.float32 if args.dtype == "float32" else torch.float64,
                          random_state=args.seed, verbose=not args.quiet)
    t_fit = time.perf_counter()
    est.fit((data.rows[train], data.cols[train], data.values[train]), shape=(n, d))
    fit_s = time.perf_counter() - t_fit
    pred = est.predict(data.rows[test], data.cols[test])
    if args.clip:
        pred = np.clip(pred, data.values.min(), data.values.max())
    rmse = float(np.sqrt(np.mean((pred - data.values[test]) ** 2)))
    print(f"test RMSE {rmse:.4f}  ({est.n_iter_} sweeps, best {est.best_iter_}; "
          f"fit {fit_s:.1f} s, total {time.perf_counter() - t0:.1f} s)")
    if args.out:
        with open(args.out, "w") as f:
            f.write("user,item,rating,prediction\n")
            for u, i, r, p in zip(data.user_ids[data.rows[test]], data.item_ids[data.cols[test]],
                                  data.values[test], pred):
                f.write(f"{u},{i},{r:g},{p:.4f}\n")
        print(f"wrote {int(test.sum())} predictions to {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("complete", help="lin-RFM matrix completion of a MovieLens ratings file",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("ratings", help="MovieLens u.data (tab-separated) or ratings.dat (::-separated)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="test share (default 0.1)")
    p.add_argument("--out", default=None, help="CSV file for the test predictions")
    p.add_argument("--alpha", type=float, default=0.5, help="Gram power (default 0.5: SVD-free)")
    p.add_argument("--bias", choices=("none", "global", "rowcol"), default="rowcol",
                   help="bias model fitted before completion (default rowcol)")
    p.add_argument("--holdout", type=float, default=0.1,
                   help="share of the training ratings used to choose the ridge and stop")
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-clip", dest="clip", action="store_false",
                   help="do not clip predictions to the rating range")
    p.add_argument("--quiet", action="store_true", help="no per-sweep progress")
    p.set_defaults(func=run)
