"""A Nystroem RFM fit on many rows: RFMRegressor(centers=m) on generated data, the target of
the Science 2024 notebook (docs/math.md), f*(x) = x_0 x_1 1[x_5 > 0] in d = 20 dimensions
(rfmfast.cases.low_rank_data).

Nystroem RFM solves on m fixed centers (preconditioned CG) and takes the AGOP of the Nystroem
predictor, so memory is O(m^2 + (rows + m) d), never rows x m, and the time per iteration is
linear in the rows. The default size runs in seconds; the documented full size is a million
rows:

    python examples/nystroem_fit.py                                 # 20,000 rows
    python examples/nystroem_fit.py --rows 1000000 --centers 4000   # the full size
"""

import argparse
import time

import numpy as np

from rfmfast import RFMRegressor
from rfmfast.cases import low_rank_data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20_000, help="training rows (default 20000)")
    ap.add_argument("--centers", type=int, default=500, help="Nystroem centers (default 500)")
    ap.add_argument("--iters", type=int, default=3, help="RFM iterations (default 3)")
    ap.add_argument("--d", type=int, default=20, help="input dimension (default 20)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    X, y = low_rank_data(args.rows, args.d, args.seed)
    X_te, y_te = low_rank_data(5_000, args.d, args.seed + 1)
    print(f"{args.rows} rows x {args.d} features, {args.centers} Nystroem centers")
    t0 = time.perf_counter()
    model = RFMRegressor(
        centers=args.centers,
        iters=args.iters,
        agop_samples=min(args.rows, 20_000),
        random_state=args.seed,
    )
    model.fit(X, y)
    fit_s = time.perf_counter() - t0
    for row in model.history_:
        print(f"  iteration {row['iter']}: train mse {row['train_mse']:.4g}")
    mse = float(np.mean((model.predict(X_te) - y_te) ** 2))
    print(f"test mse {mse:.4g} (target variance {float(np.var(y_te)):.4g}); fit {fit_s:.1f} s")
    top = np.argsort(model.feature_importances_)[::-1][:3]
    print(f"top features by diag(M): {sorted(top.tolist())} (the target uses 0, 1, 5)")


if __name__ == "__main__":
    main()
