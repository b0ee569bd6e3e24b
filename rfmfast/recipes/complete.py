"""`rfmfast complete RATINGS`: lin-RFM completion of a MovieLens ratings file.

Holds out a seeded random ``--test-fraction`` of the ratings, fits LinRFMCompleter on the rest
(the ridge and stopping are chosen on a further held-out part of those, never on the test set),
prints one line per sweep, then the test RMSE and the time, and writes the test predictions
(user, item, rating, prediction) as CSV to ``--out`` (never over an existing file without
``--force``).

Everything that can be checked before the fit is: the options, the estimator's parameters,
``--out`` (its directory exists and takes a file), the device, and after reading the file
that the test and training sets are not empty.
"""

from __future__ import annotations

import time

import numpy as np

from ..cli import UsageError, check_out, device_arg, fraction_arg, positive_int_arg


def run(args) -> int:
    from ..datasets import load_movielens, split_ratings
    from ..models.linrfm import LinRFMCompleter

    t0 = time.perf_counter()
    est = LinRFMCompleter(
        alpha=args.alpha,
        bias=args.bias,
        holdout=args.holdout,
        max_iter=args.max_iter,
        device=args.device,
        dtype=args.dtype,
        random_state=args.seed,
        verbose=not args.quiet,
    )
    try:
        est._check_params()
    except ValueError as e:  # an option out of range: a usage error
        raise UsageError(str(e)) from None
    if args.out:
        check_out(args.out, args.force)
    data = load_movielens(args.ratings)
    test = split_ratings(len(data.values), args.test_fraction, args.seed)
    train = ~test
    n_test, n_train = int(test.sum()), int(train.sum())
    if n_test == 0 or n_train == 0:
        raise ValueError(
            f"--test-fraction {args.test_fraction} of {len(data.values)} ratings leaves "
            f"{n_test} for the test set and {n_train} for training; both must be non-empty"
        )
    n, d = data.shape
    print(
        f"{args.ratings}: {len(data.values)} ratings, {n} users x {d} items; "
        f"{n_train} train, {n_test} test",
        flush=True,
    )
    t_fit = time.perf_counter()
    est.fit((data.rows[train], data.cols[train], data.values[train]), shape=(n, d))
    fit_s = time.perf_counter() - t_fit
    pred = est.predict(data.rows[test], data.cols[test])
    if args.clip:
        pred = np.clip(pred, data.values.min(), data.values.max())
    rmse = float(np.sqrt(np.mean((pred - data.values[test]) ** 2)))
    print(
        f"test RMSE {rmse:.4f}  ({est.n_iter_} sweeps, best {est.best_iter_}; "
        f"fit {fit_s:.1f} s, total {time.perf_counter() - t0:.1f} s)"
    )
    if args.out:
        with open(args.out, "w" if args.force else "x") as f:
            f.write("user,item,rating,prediction\n")
            for u, i, r, p in zip(
                data.user_ids[data.rows[test]],
                data.item_ids[data.cols[test]],
                data.values[test],
                pred,
            ):
                f.write(f"{u},{i},{r:g},{p:.4f}\n")
        print(f"wrote {n_test} predictions to {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "complete",
        help="lin-RFM matrix completion of a MovieLens ratings file",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument(
        "ratings",
        help="MovieLens ratings.csv, u.data (tab-separated) or ratings.dat (::-separated)",
    )
    p.add_argument(
        "--test-fraction",
        type=fraction_arg,
        default=0.1,
        help="test share, in (0, 1) (default 0.1)",
    )
    p.add_argument("--out", default=None, help="CSV file for the test predictions")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--alpha", type=float, default=0.5, help="Gram power (default 0.5: SVD-free)")
    p.add_argument(
        "--bias",
        choices=("auto", "none", "global", "rowcol"),
        default="auto",
        help="offsets fitted before completion (default auto: chosen on held-out ratings)",
    )
    p.add_argument(
        "--holdout",
        type=float,
        default=0.05,
        help="share of the training ratings used to choose the ridge and stop (default 0.05)",
    )
    p.add_argument("--max-iter", type=positive_int_arg, default=500)
    p.add_argument(
        "--device", type=device_arg, default=None, help="cpu or cuda (default: cuda if available)"
    )
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-clip",
        dest="clip",
        action="store_false",
        help="do not clip predictions to the rating range",
    )
    p.add_argument("--quiet", action="store_true", help="no per-sweep progress")
    p.set_defaults(func=run)
