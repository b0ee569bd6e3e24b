"""cholesky_inplace, the dense factorization under the Cholesky solve: rfmfast's C++ GEMM and
recursive Cholesky against float64 torch / LAPACK on ragged sizes, every instruction-set variant,
every backend that implements it (the Triton backend does not)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _cases import available, backends, needs, rel_err
from _tolerances import CHOLESKY_FACTOR_FACTOR
from _tolerances import CHOLESKY_TOL as TOL

from rfmfast.ops.cholesky import cholesky_inplace

CPU = available("cpu")
needs_cpu = needs("cpu")
ISAS = []
if CPU:
    from rfmfast import _C

    ISAS = _C.available_isas().split(",")


@pytest.fixture(params=ISAS or ["none"])
def isa(request):
    if not CPU:
        pytest.skip("C++ extension not built")
    before = _C.isa()
    _C.set_isa(request.param)
    yield request.param
    _C.set_isa(before)


def spd(n, dtype, seed, d=7, reg=1e-1):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, dtype=torch.float64, generator=g)
    K = torch.exp(-torch.cdist(X, X) / 3.0) + reg * torch.eye(n, dtype=torch.float64)
    return K, K.to(dtype, copy=True)


@needs_cpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "m, n, k", [(1, 1, 1), (13, 37, 5), (100, 33, 300), (257, 513, 260), (129, 129, 1003)]
)
def test_gemm_nt_matches_float64(isa, dtype, m, n, k):
    from rfmfast.ops._cpu.glue import fn

    g = torch.Generator().manual_seed(m * n + k)
    A, B, C = (torch.randn(*s, dtype=dtype, generator=g) for s in ((m, k), (n, k), (m, n)))
    ref = C.double() - A.double() @ B.double().T
    out = C.clone()
    fn("gemm_nt", dtype)(out.numpy(), A.numpy(), B.numpy(), False, torch.get_num_threads())
    assert rel_err(out, ref) < TOL[dtype]
    if m == n:  # lower: the lower triangle is updated exactly as the full product
        low = C.clone()
        fn("gemm_nt", dtype)(low.numpy(), A.numpy(), B.numpy(), True, torch.get_num_threads())
        assert torch.equal(low.tril(), out.tril())


@needs_cpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 7, 47, 49, 129, 1003])
def test_cholesky_matches_lapack(isa, dtype, n):
    K64, K = spd(n, dtype, seed=n)
    K += torch.full_like(K, float("nan")).triu(1)  # the upper triangle is never read
    assert cholesky_inplace(K, backend="cpu") == 0
    L = K.tril()
    assert rel_err(L, torch.linalg.cholesky(K64)) < CHOLESKY_FACTOR_FACTOR * TOL[dtype]
    assert rel_err(L.double() @ L.double().T, K64) < TOL[dtype]


@pytest.mark.parametrize("backend", backends("cpu", with_reference=True))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backends_agree_and_report_the_failing_pivot(backend, dtype):
    K64, K = spd(300, dtype, seed=1)
    ok = K.clone()
    assert cholesky_inplace(ok, backend=backend) == 0
    assert rel_err(ok.tril(), torch.linalg.cholesky(K64)) < CHOLESKY_FACTOR_FACTOR * TOL[dtype]
    bad = K.clone()
    bad[200, 200] = -1.0  # leading minors 1..200 stay positive
    assert cholesky_inplace(bad, backend=backend) == 201


def test_bad_input():
    with pytest.raises(ValueError, match="square"):
        cholesky_inplace(torch.eye(3)[:2])
    with pytest.raises(TypeError, match="float32 or float64"):
        cholesky_inplace(torch.eye(3, dtype=torch.float16))
    with pytest.raises(ValueError, match="contiguous"):
        cholesky_inplace(torch.eye(4)[::2, ::2])
    assert cholesky_inplace(torch.empty(0, 0)) == 0


@needs_cpu
def test_binding_refuses_arrays_it_cannot_write_in_place():
    from rfmfast import _C

    A = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="dtype"):
        _C.cholesky_f32(A.astype(np.float64), 1)
    with pytest.raises(ValueError, match="contiguous"):
        _C.cholesky_f32(A.T[:3, :3], 1)
    A.setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        _C.cholesky_f32(A, 1)


@needs_cpu
def test_bindings_refuse_zero_threads_and_outputs_they_would_copy():
    from rfmfast import _C
    from rfmfast.ops.kernel_matrix.cpu import kernel_matrix_into

    with pytest.raises(ValueError, match="nthreads"):
        _C.cholesky_f32(np.eye(3, dtype=np.float32), 0)
    with pytest.raises(ValueError, match="nthreads"):
        _C.gemm_nt_f32(
            np.eye(3, dtype=np.float32),
            np.eye(3, dtype=np.float32),
            np.eye(3, dtype=np.float32),
            False,
            0,
        )
    X = torch.randn(5, 3)
    for out, msg in [
        (np.empty((5, 5)), "dtype"),
        (np.empty((5, 10), np.float32)[:, ::2], "contiguous"),
    ]:
        with pytest.raises(ValueError, match=msg):
            kernel_matrix_into(X, X, "laplace", 1.0, None, "full", out)


# --- the auto choice between the own factorization and LAPACK's (ops/cholesky/choice.py) ---


def test_the_rule_prefers_lapack_unless_the_own_one_is_faster():
    from rfmfast.ops.cholesky.choice import MARGIN, decide

    assert decide(1.2, 1.0) == "lapack"  # own slower
    assert decide(1.0, 1.0) == "lapack"  # a tie goes to LAPACK
    assert decide(MARGIN * 1.0 + 1e-3, 1.0) == "lapack"  # within the margin
    assert decide(0.8, 1.0) == "own"


def _fake(seconds):
    import time

    def factor(a):
        time.sleep(seconds)

    return factor


@pytest.fixture
def fresh_choice(monkeypatch):
    from rfmfast.ops.cholesky import choice

    monkeypatch.setattr(choice, "_cache", {})
    monkeypatch.delenv("RFMFAST_CHOLESKY", raising=False)
    return choice


def test_timing_picks_lapack_where_the_own_factorization_is_slower(fresh_choice):
    c = fresh_choice
    assert c.choose(5000, torch.float32, "avx2", 2, _fake(0.02), _fake(0.002)) == "lapack"
    assert c.choose(5000, torch.float32, "avx2", 4, _fake(0.002), _fake(0.02)) == "own"
    # timed once per (isa, dtype, threads, size class), then remembered
    assert c.choose(4000, torch.float32, "avx2", 2, _fake(0.0), _fake(0.05)) == "lapack"
    assert c.choose(1000, torch.float32, "avx2", 2, _fake(0.0), _fake(0.02)) == "own"
    assert len(c.measurements()) == 3


def test_the_choice_can_be_forced(fresh_choice, monkeypatch):
    c = fresh_choice
    monkeypatch.setenv("RFMFAST_CHOLESKY", "own")
    assert c.choose(5000, torch.float32, "avx2", 2, _fake(0.02), _fake(0.0)) == "own"
    monkeypatch.setenv("RFMFAST_CHOLESKY", "lapack")
    assert c.choose(5000, torch.float32, "avx2", 2, _fake(0.0), _fake(0.02)) == "lapack"
    assert c.measurements() == {}
    monkeypatch.setenv("RFMFAST_CHOLESKY", "fastest")
    with pytest.raises(ValueError, match="RFMFAST_CHOLESKY"):
        c.choose(5000, torch.float32, "avx2", 2, _fake(0.0), _fake(0.0))


@needs_cpu
@pytest.mark.parametrize("forced", ["own", "lapack", "auto"])
def test_auto_factorization_is_right_whichever_runs(fresh_choice, monkeypatch, forced):
    from rfmfast.solvers.cholesky import cholesky_solve

    monkeypatch.setenv("RFMFAST_CHOLESKY", forced)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(700, 5, generator=g, dtype=torch.float64)
    y = torch.randn(700, 2, generator=g, dtype=torch.float64)
    alpha, info = cholesky_solve(X, y, bandwidth=2.0, reg=1e-2)
    K = torch.cdist(X, X).div(-2.0).exp() + 1e-2 * torch.eye(700, dtype=torch.float64)
    assert rel_err(alpha, torch.linalg.solve(K, y)) < 1e-6  # cond(K + reg I) ~ 1e5
    want = {"own": "rfmfast", "lapack": "lapack"}.get(forced)
    assert info.factorization == want if want else info.factorization in ("rfmfast", "lapack")
