"""pytest-benchmark: kernel_matrix (laplace), rfmfast cpu vs torch.cdist + exp.

    pytest bench/bench_kernel_matrix.py --benchmark-only
"""
import pytest
import torch

import rfmfast

N, D = 8000, 50


@pytest.fixture(scope="module")
def X():
    torch.manual_seed(0)
    return torch.randn(N, D)


@pytest.mark.parametrize("impl", ["cdist_exp", "rfmfast_cpu", "rfmfast_cpu_symmetric"])
def test_kernel_matrix(benchmark, X, impl):
    Z = X.clone()
    fn = {
        "cdist_exp": lambda: torch.cdist(X, Z).mul_(-0.1).exp_(),
        "rfmfast_cpu": lambda: rfmfast.kernel_matrix(X, Z, backend="cpu"),
        "rfmfast_cpu_symmetric": lambda: rfmfast.kernel_matrix(X, backend="cpu"),
    }[impl]
    benchmark.extra_info["kernel_entries"] = N * N
    benchmark.pedantic(fn, rounds=3, warmup_rounds=1)
