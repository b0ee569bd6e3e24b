"""The xRFM drop-in: xRFM's RFM with rfmfast's fused ops as its kernel,
``xrfm.RFM(kernel=RfmfastKernel("laplace", 10.0))`` (rfmfast/xrfm_plugin.py), against xRFM's own
LaplaceKernel on the same data: the same predictions up to rounding, from memory-bounded ops.

Needs xrfm (``pip install xrfm==0.4.5``); without it the script says so and exits 0.

    python examples/xrfm_dropin.py
    python examples/xrfm_dropin.py --n 20000
"""

import argparse
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="training rows (default 2000)")
    ap.add_argument("--d", type=int, default=20, help="input dimension (default 20)")
    ap.add_argument("--iters", type=int, default=3, help="RFM iterations (default 3)")
    args = ap.parse_args(argv)
    try:
        import xrfm
        from xrfm.rfm_src.kernels import LaplaceKernel

        from rfmfast.xrfm_plugin import RfmfastKernel
    except ImportError as e:
        print(f"skipped: xrfm is not installed (pip install xrfm==0.4.5): {e}")
        return 0
    import torch

    from rfmfast.cases import low_rank_data

    X, y = low_rank_data(args.n, args.d, 0, source="torch", dtype=torch.float64)
    Xv, yv = low_rank_data(1000, args.d, 1, source="torch", dtype=torch.float64)
    y, yv = y[:, None], yv[:, None]
    preds = {}
    for name, kernel in (
        ("xRFM LaplaceKernel", LaplaceKernel(bandwidth=10.0, exponent=1.0)),
        ("rfmfast RfmfastKernel", RfmfastKernel("laplace", 10.0)),
    ):
        t0 = time.perf_counter()
        m = xrfm.RFM(
            kernel=kernel, iters=args.iters, device="cpu", verbose=False, tuning_metric="mse"
        )
        m.fit((X, y), (Xv, yv), reg=1e-3, early_stop_rfm=False, verbose=False)
        p = torch.as_tensor(m.predict(Xv)).double().reshape(-1, 1)
        preds[name] = p
        mse = float(((p - yv) ** 2).mean())
        print(f"{name:22s} val mse {mse:.4g}  ({time.perf_counter() - t0:.1f} s)")
    a, b = preds.values()
    rel = float((a - b).norm() / b.norm())
    print(f"relative difference of the predictions: {rel:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
