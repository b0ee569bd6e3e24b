"""pytest-benchmark: kernel_matmul (laplace), rfmfast cpu vs the blocked-PyTorch baselines.

    pytest bench/bench_kernel_matmul.py --benchmark-only --benchmark-group-by=param:t
The full-size side-by-side table with ratios and the floor is bench/compare_cpu.py.
"""
import pytest
import torch

import baselines as B
import rfmfast

N, D = 8000, 50


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    return torch.randn(N, D), torch.randn(N, D)


@pytest.mark.parametrize("t", [1, 16])
@pytest.mark.parametrize("impl", ["plain_torch", "tuned_torch", "rfmfast_cpu"])
def test_kernel_matmul(benchmark, data, impl, t):
    X, Z = data
    V = torch.randn(N, t)
    fn = {
        "plain_torch": lambda: B.matmul_plain(X, Z, V, 10.0),
        "tuned_torch": lambda: B.matmul_tuned(X, Z, V, 10.0),
        "rfmfast_cpu": lambda: rfmfast.kernel_matmul(X, Z, V, backend="cpu"),
    }[impl]
    benchmark.extra_info["kernel_entries"] = N * N
    benchmark.pedantic(fn, rounds=3, warmup_rounds=1)
