"""pytest-benchmark: agop (laplace, full M), rfmfast cpu vs xrfm 0.4.5's get_agop path.

    pytest bench/bench_agop.py --benchmark-only
The full-size side-by-side table (n = 20,000) is bench/compare_cpu.py.
"""
import pytest
import torch

import baselines as B
import rfmfast

N, D, C = 6000, 100, 10


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    X = torch.randn(N, D) / D ** 0.5 * 3
    A = torch.randn(D, D)
    M = A @ A.T / D
    w, U = torch.linalg.eigh(M.double())
    sqrtM = ((U * w.clamp(min=0).sqrt()) @ U.T).float()
    return X, torch.randn(N, C), M, sqrtM


@pytest.mark.parametrize("impl", ["xrfm", "rfmfast_cpu"])
def test_agop(benchmark, data, impl):
    X, alpha, M, sqrtM = data
    if impl == "xrfm":
        pytest.importorskip("xrfm")
        fn = lambda: B.xrfm_agop(X, X, alpha, sqrtM)  # noqa: E731
    else:
        fn = lambda: rfmfast.agop(X, X, alpha, M=M, backend="cpu")  # noqa: E731
    benchmark.extra_info["gflop"] = 2 * N * N * (C * D + C) / 1e9
    benchmark.pedantic(fn, rounds=2, warmup_rounds=1)
