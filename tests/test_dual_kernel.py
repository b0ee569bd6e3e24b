"""dual_kernel (deep NNGP / NTK kernels) on every backend against the float64 reference, the
activations' formulas, the log domain and the infinite-depth exponent."""

import math

import numpy as np
import pytest
import torch
from _cases import backends, on

import rfmfast
from rfmfast.ops.dual_kernel import activations as A
from rfmfast.ops.dual_kernel import dual_kernel, reference, singular_exponent

ACTS = [
    "relu",
    "erf",
    "sine",
    "sine_2.676",
    "hermite_1",
    "hermite_3",
    "2d_opt",
    "3d_opt",
    "5d_opt",
    "9d_opt",
]


def sphere(n, d, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(
        torch.randn(n, d, generator=g, dtype=torch.float64), dim=1
    ).to(dtype)


def truth(X, Z, depth, act, kind):
    """The recursion written out once more, entry by entry in float64 with math's functions."""
    a = A.activation(act)
    R = (X.double() @ Z.double().T).clamp(-1, 1)
    same = X.shape == Z.shape and torch.equal(X, Z)
    out = torch.empty_like(R)
    for i in range(R.shape[0]):
        for j in range(R.shape[1]):
            s = 1.0 if (same and i == j) else float(R[i, j])
            k = s
            for _ in range(depth):
                t = torch.tensor(s, dtype=torch.float64)
                ps, dps = float(a.psi(t)), float(a.dpsi(t))
                k = ps + k * dps
                s = min(1.0, max(-1.0, ps))
            out[i, j] = k if kind == "ntk" else s
    return out


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_reference_against_the_written_out_recursion(act, kind):
    X, Z = sphere(7, 4, 1), sphere(5, 4, 2)
    got = dual_kernel(X, Z, depth=3, activation=act, kind=kind, backend="reference")
    assert torch.allclose(got, truth(X, Z, 3, act, kind), rtol=1e-12, atol=1e-14)


def test_psi_formulas():
    s = torch.linspace(-1, 1, 11, dtype=torch.float64)
    relu = A.activation("relu")
    assert torch.allclose(
        relu.psi(s), (s * (math.pi - torch.acos(s)) + torch.sqrt(1 - s**2)) / math.pi
    )
    for name in ACTS:
        a = A.activation(name)
        assert float(a.psi(torch.tensor(1.0, dtype=torch.float64))) == pytest.approx(
            1.0, abs=1e-12
        ), name
        # psi' against a central difference
        t = torch.linspace(-0.9, 0.9, 7, dtype=torch.float64)
        h = 1e-6
        fd = (a.psi(t + h) - a.psi(t - h)) / (2 * h)
        assert torch.allclose(a.dpsi(t), fd, rtol=1e-6, atol=1e-7), name
    assert A.activation("2d_opt").coeffs == (0, 0.5, 0, 0, 0, 0, 0, 0.5)


def test_cpp_activation_codes_match():
    _C = pytest.importorskip("rfmfast._C", reason="C++ extension not built")
    codes = _C.dual_codes()
    assert (codes["poly"], codes["relu"], codes["erf"], codes["sine"]) == (
        A.POLY,
        A.RELU,
        A.ERF,
        A.SINE,
    )
    assert codes["max_degree"] == A.MAX_DEGREE


@pytest.mark.parametrize("backend", backends("cpu", "triton"))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("act", ["relu", "erf", "sine_2.676", "hermite_2", "2d_opt", "9d_opt"])
@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_backends_match_reference(backend, dtype, act, kind):
    X, Z = sphere(37, 5, 3, dtype), sphere(29, 5, 4, dtype)
    ref = dual_kernel(
        X.double(), Z.double(), depth=6, activation=act, kind=kind, backend="reference"
    )
    got = dual_kernel(*on(backend, X, Z), depth=6, activation=act, kind=kind, backend=backend).cpu()
    assert got.dtype == dtype and got.shape == (37, 29)
    tol = 1e-12 if dtype == torch.float64 else 5e-5
    assert float((got.double() - ref).norm() / ref.norm()) < tol


@pytest.mark.parametrize("backend", backends("cpu", "triton", with_reference=True))
def test_self_pairs_and_near_duplicates(backend):
    """1 is a repelling fixed point: the diagonal must be exactly 1 at any depth, and a
    near-duplicate pair must keep its (large) value, not collapse to 0."""
    X = sphere(40, 3, 5)
    X[1] = torch.nn.functional.normalize(X[0] + 1e-7, dim=0)
    X[2] = -X[3]  # antipodal
    (Xb,) = on(backend, X)
    K = dual_kernel(Xb, depth=60, activation="2d_opt", backend=backend).cpu()
    assert torch.equal(torch.diagonal(K), torch.ones(40, dtype=torch.float64))
    assert torch.equal(K, K.T)
    d2 = float(((X[0] - X[1]) ** 2).sum())
    # far from 1 and 0 the value follows the distance law: Sigma ~ C 2^-L (1 - rho)^(-1/2)
    assert 0 < K[0, 1] < 1 and K[0, 1] > 1e3 * K[0, 5:].max()
    assert d2 > 0
    assert float(K[2, 3]) == -1.0  # odd psi: psi(-1) = -1


def test_near_pair_rule_matches_distances():
    X = sphere(6, 4, 7)
    Z = torch.nn.functional.normalize(X + 1e-5 * torch.randn_like(X), dim=1)
    R = reference.correlations(X, Z)
    diff = X - Z
    assert torch.allclose(torch.diagonal(R), 1 - 0.5 * (diff * diff).sum(1), rtol=0, atol=1e-18)


def test_log_domain():
    X, Z = sphere(9, 3, 8), sphere(7, 3, 9)
    for act in ["hermite_2", "2d_opt", "erf", "sine_2"]:
        la, sg = dual_kernel(X, Z, depth=5, activation=act, log_domain=True)
        lin = dual_kernel(X, Z, depth=5, activation=act)
        assert torch.allclose(sg * torch.exp(la), lin, rtol=1e-10, atol=1e-300), act
    # where the linear domain underflows: hermite_2 at depth 40 is rho^(2^40)
    la, sg = dual_kernel(X, Z, depth=40, activation="hermite_2", log_domain=True)
    rho = (X @ Z.T).clamp(-1, 1)
    assert torch.allclose(la, 2.0**40 * torch.log(rho.abs()), rtol=1e-12)
    assert bool((dual_kernel(X, Z, depth=40, activation="hermite_2") == 0).any())
    # 2d_opt far past underflow: the leading term rho/2 per step, log-sum-exp exact
    la, _ = dual_kernel(X, Z, depth=1200, activation="2d_opt", log_domain=True)
    assert bool(torch.isfinite(la).all()) and float(la.max()) < -700


def test_singular_exponent():
    assert singular_exponent("2d_opt") == pytest.approx(1.0)
    assert singular_exponent("3d_opt") == pytest.approx(2.0)
    assert singular_exponent("5d_opt") == pytest.approx(4.0)
    assert singular_exponent("9d_opt") == pytest.approx(8.0)
    assert singular_exponent("hermite_2") == math.inf  # psi'(0) = 0: 1-NN
    assert singular_exponent("relu") == 0.0  # psi'(1) = 1: majority vote
    a = 2 * math.log(math.sinh(2.676) / 2.676) / math.log(2.676 / math.tanh(2.676))
    assert singular_exponent("sine_2.676") == pytest.approx(a)


@pytest.mark.parametrize("act", ["3d_opt", "5d_opt", "sine_2.676"])
def test_deep_nngp_becomes_the_singular_kernel(act):
    """At depth L, Sigma_L(rho1) / Sigma_L(rho2) -> ((1 - rho1) / (1 - rho2))^(-a / 2) as
    1 - rho -> 0 (measured: within 1.3e-4 for 1 - rho from 1e-7 to 1e-4)."""
    a = singular_exponent(act)
    rho = 1 - torch.tensor([1e-7, 1e-6, 1e-5, 1e-4], dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    Z = torch.stack([rho, torch.sqrt(1 - rho**2)], 1)
    la, _ = dual_kernel(x, Z, depth=400, activation=act, log_domain=True)
    ratios = torch.exp(la[0] - la[0, -1])
    expected = ((1 - rho) / (1 - rho[-1])) ** (-a / 2)
    assert torch.allclose(ratios, expected, rtol=1e-3)


def test_custom_activation_and_errors():
    X = sphere(5, 3, 10)
    cos = A.Activation.custom(lambda s: torch.cos(s - 1), lambda s: -torch.sin(s - 1))
    K = dual_kernel(X, depth=2, activation=cos, kind="ntk")
    S = (X @ X.T).clamp(-1, 1)
    S.fill_diagonal_(1.0)
    K0 = S
    for _ in range(2):
        P = torch.cos(S - 1)
        K0 = P + K0 * -torch.sin(S - 1)
        S = P.clamp(-1, 1)
    assert torch.allclose(K, K0)
    with pytest.raises(ValueError, match="reference backend only"):
        dual_kernel(X, depth=2, activation=cos, backend="cpu")
    with pytest.raises(ValueError, match="unit sphere"):
        dual_kernel(X * 2, depth=1)
    assert torch.allclose(dual_kernel(X * 2, depth=1, normalize=True), dual_kernel(X, depth=1))
    with pytest.raises(ValueError, match="unknown activation"):
        dual_kernel(X, depth=1, activation="tanh")
    with pytest.raises(ValueError, match="depth"):
        dual_kernel(X, depth=-1)
    with pytest.raises(ValueError, match="kind"):
        dual_kernel(X, depth=1, kind="cntk")
    with pytest.raises(ValueError, match="log_domain"):
        dual_kernel(X, depth=1, kind="ntk", log_domain=True)
    with pytest.raises(ValueError, match="NaN"):
        dual_kernel(X * float("nan"), depth=1)
    with pytest.raises(ValueError, match="needs psi'"):
        dual_kernel(X, depth=1, kind="ntk", activation=A.Activation.custom(torch.cos))
    out = rfmfast.dual_kernel(X.numpy(), depth=2, activation="erf")
    assert isinstance(out, np.ndarray) and out.shape == (5, 5)


@pytest.mark.parametrize("backend", backends("cpu", "triton", with_reference=True))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("act", ["sine_1.5", "sine_3", "sine_7", "erf", "relu", "3d_opt"])
def test_diagonal_stays_exactly_one_at_depth(backend, dtype, act):
    """psi(1) must be exactly 1 in the dtype: 1 is a repelling fixed point for these
    activations, so a psi(1) one ulp below 1 makes the NNGP's diagonal decay to 0 with depth
    (a normalizer multiplied as a rounded reciprocal did exactly that)."""
    (X,) = on(backend, sphere(20, 3, 11, dtype))
    K = dual_kernel(X, depth=60, activation=act, backend=backend).cpu()
    assert torch.equal(torch.diagonal(K), torch.ones(20, dtype=dtype))


@pytest.mark.parametrize("backend", backends("cpu", "triton"))
def test_deep_sine_off_diagonal_is_accurate(backend):
    """Deep sine kernels go to 0 off the diagonal, where sinh(a s) of small a s must not lose
    digits to cancellation: every entry against the reference, relatively."""
    X, Z = sphere(17, 4, 12), sphere(13, 4, 13)
    ref = dual_kernel(X, Z, depth=40, activation="sine_2.676", backend="reference")
    got = dual_kernel(*on(backend, X, Z), depth=40, activation="sine_2.676", backend=backend)
    rel = ((got.cpu() - ref).abs() / ref.abs().clamp_min(1e-300)).max()
    assert float(rel) < 1e-10


def test_large_sine_parameter_is_refused():
    with pytest.raises(ValueError, match="unknown activation"):
        A.activation("sine_800")
