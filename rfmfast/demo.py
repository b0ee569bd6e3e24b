"""`rfmfast demo`: the fused ops against plain PyTorch on built-in data, then an RFM fit.

Everything here is generated or bundled (no downloads): timings of kernel_matmul and agop
next to a well-written blocked PyTorch version, then RFM on the low-rank target of the
Science 2024 notebook (docs/math.md): f*(x) = x_0 x_1 1[x_5 > 0], d = 20
(rfmfast.cases.low_rank_data).
"""

from __future__ import annotations

import time

import torch


def _timed(fn):
    fn()  # warm-up
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(n_ops: int = 8000, n_rfm: int = 4000, iters: int = 5) -> dict:
    import rfmfast
    from rfmfast.backends import choose
    from rfmfast.bench.baselines import matmul_blocked
    from rfmfast.cases import low_rank_data

    backend = choose("auto", torch.device("cpu"), "kernel_matmul")
    print(
        f"rfmfast {rfmfast.__version__}: ops run on the '{backend}' backend "
        f"({torch.get_num_threads()} threads); `python -m rfmfast.info` for details\n"
    )

    torch.manual_seed(0)
    X = torch.randn(n_ops, 50)
    V = torch.randn(n_ops, 1)
    # blocked PyTorch (the benchmarks' baseline): 1024-row blocks, each one tile of all columns
    t_ref, ref = _timed(lambda: matmul_blocked(X, X, V, 10.0, rows=1024, cols=X.shape[0]))
    t_rf, out = _timed(lambda: rfmfast.kernel_matmul(X, X, V, bandwidth=10.0))
    err = float((out - ref).norm() / ref.norm())
    print(f"kernel_matmul  laplace, n = m = {n_ops}, d = 50, t = 1")
    print(
        f"  blocked PyTorch {t_ref:7.3f} s   rfmfast {t_rf:7.3f} s   "
        f"speed-up {t_ref / t_rf:5.1f}x   rel. difference {err:.1e}"
    )

    q = n_ops // 2
    alpha = torch.randn(q, 10)
    t_ag, A = _timed(lambda: rfmfast.agop(X[:q], X[:q], alpha, M=torch.eye(50)))
    print(
        f"agop           laplace, q = n = {q}, d = 50, c = 10, full M: {t_ag:7.3f} s "
        f"({2 * q * q * 510 / t_ag / 1e9:.0f} GFLOP/s of the value GEMM)\n"
    )

    Xtr, ytr = low_rank_data(n_rfm, seed=1, source="torch")
    Xte, yte = low_rank_data(n_rfm, seed=2, source="torch")
    print(
        f"RFM on the low-rank target x0*x1*1[x5>0]: n = {n_rfm} train / {n_rfm} test, d = 20, "
        f"laplace L = 10, reg = 1e-3, {iters} iterations"
    )
    t0 = time.perf_counter()
    # the test set is only watched (keep_best=False: nothing is selected on it)
    model = rfmfast.RFMRegressor(
        iters=iters, bandwidth=10.0, reg=1e-3, keep_best=False, random_state=0
    )
    model.fit(Xtr, ytr, X_val=Xte, y_val=yte)
    mses = [row["val_mse"] for row in model.history_]
    for row in model.history_:
        print(
            f"  iteration {row['iter']}: test MSE {row['val_mse']:.4f}   "
            f"(solve {row['solve_s']:.2f} s"
            + (f", AGOP {row['agop_s']:.2f} s)" if row["agop_s"] else ")")
        )
    print(f"  fit time {time.perf_counter() - t0:.1f} s")
    return {"kernel_matmul_speedup": t_ref / t_rf, "rfm_test_mse": mses}


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the fused ops vs plain PyTorch, then an RFM fit (built-in data)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--n", type=int, default=8000, help="points for the op timings")
    p.add_argument("--n-rfm", type=int, default=4000, help="training points for the RFM fit")
    p.add_argument("--iters", type=int, default=5)
    p.set_defaults(func=lambda a: run(a.n, a.n_rfm, a.iters) and 0)
