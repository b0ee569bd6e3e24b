"""Gradients of kernel_matrix and kernel_matmul (rfmfast.ops._autograd): torch.autograd.gradcheck
in float64 as the oracle, and agreement with the reference backend's autograd, for X, Z, V and
M (none, diagonal, full) and every kernel; the zero-distance rule; second derivatives refused.
Triton runs in its interpreter on CPU tensors at tiny sizes (gradcheck once, the rest against
the reference), or on the GPU where one exists."""

from __future__ import annotations

import pytest
import torch

import rfmfast
from rfmfast.kernels import KERNELS

from ._cases import HAS_CUDA, backends, device, needs

F64 = torch.float64
M_KINDS = ("none", "diag", "full")
BW = {"laplace": 2.0, "gaussian": 1.5, "l1_laplace": 2.5}


def _leaves(n, m, d, t, mkind, seed=0, dtype=F64, dev="cpu"):
    """X (n, d), Z (m, d), V (m, t) and the leaf P that M is made of ("diag": M = P, entries in
    [0.5, 1.5); "full": M = P P^T / d + 0.5 I, exactly symmetric and well conditioned), all
    requiring grad. gradcheck perturbs P, never M itself: a perturbed full M would no longer be
    symmetric, which the op refuses."""
    g = torch.Generator().manual_seed(seed)
    X, Z, V = (torch.randn(*s, generator=g, dtype=F64) for s in ((n, d), (m, d), (m, t)))
    if mkind == "diag":
        P = torch.rand(d, generator=g, dtype=F64) + 0.5
    elif mkind == "full":
        P = torch.randn(d, d, generator=g, dtype=F64)
    else:
        P = None
    out = [None if a is None else a.to(dev, dtype).requires_grad_() for a in (X, Z, V, P)]
    return out


def _M(P, mkind):
    if mkind == "full":
        d = P.shape[0]
        return P @ P.T / d + 0.5 * torch.eye(d, dtype=P.dtype, device=P.device)
    return P  # None or the diagonal


def _matmul(backend, kernel, mkind, **kw):
    def f(X, Z, V, P=None):
        return rfmfast.kernel_matmul(
            X, Z, V, kernel=kernel, bandwidth=BW[kernel], M=_M(P, mkind), backend=backend, **kw
        )

    return f


def _matrix(backend, kernel, mkind, symmetric=False):
    def f(X, Z, P=None):
        return rfmfast.kernel_matrix(
            X,
            None if symmetric else Z,
            kernel=kernel,
            bandwidth=BW[kernel],
            M=_M(P, mkind),
            backend=backend,
        )

    return f


def _grads(out, inputs, seed=1):
    """d <W, out> / d inputs for a fixed random W (None for inputs that are None)."""
    W = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    W = W.to(out.device, out.dtype)
    live = [a for a in inputs if a is not None]
    got = iter(torch.autograd.grad((out * W).sum(), live))
    return [None if a is None else next(got) for a in inputs]


def _rel(a, b) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    assert bool(torch.isfinite(a).all()), "non-finite gradient"
    return float((a - b).norm() / max(float(b.norm()), 1e-300))


# --- gradcheck: the oracle ------------------------------------------------------------------


@pytest.mark.parametrize("backend", backends("cpu", with_reference=True))
@pytest.mark.parametrize("mkind", M_KINDS)
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_gradcheck_kernel_matmul(backend, kernel, mkind):
    X, Z, V, P = _leaves(5, 4, 3, 2, mkind)
    args = (X, Z, V) if P is None else (X, Z, V, P)
    assert torch.autograd.gradcheck(_matmul(backend, kernel, mkind), args)


@pytest.mark.parametrize("backend", backends("cpu", with_reference=True))
@pytest.mark.parametrize("mkind", M_KINDS)
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_gradcheck_kernel_matrix(backend, kernel, mkind):
    X, Z, _, P = _leaves(4, 6, 3, 1, mkind, seed=2)
    args = (X, Z) if P is None else (X, Z, P)
    assert torch.autograd.gradcheck(_matrix(backend, kernel, mkind), args)


@pytest.mark.parametrize("backend", backends("cpu", with_reference=True))
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_gradcheck_with_self_pairs(backend, kernel):
    """K(X, X) and K(X, X) V with X the same tensor: the self-pairs (distance 0, where the
    Laplace kernel has its cusp) contribute nothing, which is the true derivative there (their
    K is 1 whatever X), so gradcheck holds at coincident points too."""
    X, _, V, P = _leaves(5, 5, 3, 2, "full", seed=3)
    mat = _matrix(backend, kernel, "full", symmetric=True)
    assert torch.autograd.gradcheck(lambda X, P: mat(X, None, P), (X, P))
    mm = _matmul(backend, kernel, "full")
    assert torch.autograd.gradcheck(lambda X, V, P: mm(X, X, V, P), (X, V, P))


@needs("triton")
@pytest.mark.parametrize("op", ["kernel_matmul", "kernel_matrix"])
def test_gradcheck_triton_tiny(op):
    """One gradcheck per op on the Triton backend (slow in the interpreter: tiny sizes)."""
    dev = device("triton")
    X, Z, V, P = _leaves(3, 2, 2, 1, "diag", seed=4, dev=dev)
    if op == "kernel_matmul":
        f, args = _matmul("triton", "laplace", "diag"), (X, Z, V, P)
    else:
        f, args = _matrix("triton", "gaussian", "diag"), (X, Z, P)
    assert torch.autograd.gradcheck(f, args)


# --- against the reference backend's autograd, on ragged shapes ------------------------------

#: relative Frobenius error of a backend's gradients against the reference's autograd
GRAD_TOL = {F64: 1e-10, torch.float32: 2e-3}


#: (n, m, d, t) of the comparisons: ragged; smaller for Triton in its (slow) interpreter
RAGGED = {"cpu": (37, 23, 5, 3), "triton": (37, 23, 5, 3) if HAS_CUDA else (11, 7, 5, 2)}


def _check_against_reference(backend, op, kernel, mkind, dtype):
    n, m, d, t = RAGGED[backend]
    dev = device(backend)
    leaves = _leaves(n, m, d, t, mkind, seed=5, dtype=dtype, dev=dev)
    ref_leaves = _leaves(n, m, d, t, mkind, seed=5)
    X, Z, V, P = leaves
    Xr, Zr, Vr, Pr = ref_leaves
    if op == "kernel_matmul":
        got = _grads(_matmul(backend, kernel, mkind)(X, Z, V, P), [X, Z, V, P])
        want = _grads(_matmul("reference", kernel, mkind)(Xr, Zr, Vr, Pr), [Xr, Zr, Vr, Pr])
    else:
        got = _grads(_matrix(backend, kernel, mkind)(X, Z, P), [X, Z, P])
        want = _grads(_matrix("reference", kernel, mkind)(Xr, Zr, Pr), [Xr, Zr, Pr])
    for name, a, b in zip("XZVP" if op == "kernel_matmul" else "XZP", got, want):
        if b is None:
            assert a is None
            continue
        assert a.dtype == dtype and a.shape == b.shape
        assert _rel(a, b) < GRAD_TOL[dtype], (name, _rel(a, b))


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("mkind", M_KINDS)
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("op", ["kernel_matmul", "kernel_matrix"])
def test_gradients_match_reference_autograd(op, kernel, mkind, backend):
    _check_against_reference(backend, op, kernel, mkind, F64)


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("op", ["kernel_matmul", "kernel_matrix"])
def test_float32_gradients(op, backend):
    for kernel in KERNELS:
        _check_against_reference(backend, op, kernel, "full", torch.float32)


@pytest.mark.parametrize("backend", backends())
def test_vector_values_and_partial_requires_grad(backend):
    """V of shape (m,), and only some inputs requiring grad (the others get none)."""
    dev = device(backend)
    X, Z, V, _ = _leaves(9, 7, 4, 1, "none", seed=6, dev=dev)
    Z.requires_grad_(False)
    v = V[:, 0].detach().requires_grad_()
    out = rfmfast.kernel_matmul(X, Z, v, backend=backend, bandwidth=3.0)
    assert out.shape == (9,)
    gX, gv = torch.autograd.grad(out.square().sum(), (X, v))
    Xr, vr = X.detach().cpu().requires_grad_(), v.detach().cpu().requires_grad_()
    ref = rfmfast.kernel_matmul(Xr, Z.detach().cpu(), vr, backend="reference", bandwidth=3.0)
    rX, rv = torch.autograd.grad(ref.square().sum(), (Xr, vr))
    assert _rel(gX, rX) < GRAD_TOL[F64] and _rel(gv, rv) < GRAD_TOL[F64]
    assert Z.grad is None


# --- the zero-distance rule --------------------------------------------------------------------


@pytest.mark.parametrize("backend", backends(with_reference=True))
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_coincident_pairs_carry_no_gradient(backend, kernel):
    """Rows of Z that coincide with rows of X: the pair's term is 0 (the Laplace kernel's
    gradient is undefined there; its autograd through a plain sqrt gave NaN), the gradients
    finite and equal to the reference's, and a pair's own contribution exactly 0."""
    dev = device(backend)
    X, Z, V, _ = _leaves(8, 6, 3, 2, "none", seed=7, dev=dev)
    Zc = torch.cat([X[:3].detach(), Z[3:].detach()]).requires_grad_()
    out = rfmfast.kernel_matmul(X, Zc, V, kernel=kernel, bandwidth=2.0, backend=backend)
    gX, gZ, gV = _grads(out, [X, Zc, V])
    Xr, Zr, Vr = (a.detach().cpu().requires_grad_() for a in (X, Zc, V))
    ref = rfmfast.kernel_matmul(Xr, Zr, Vr, kernel=kernel, bandwidth=2.0, backend="reference")
    rX, rZ, rV = _grads(ref, [Xr, Zr, Vr])
    for a, b in ((gX, rX), (gZ, rZ), (gV, rV)):
        assert _rel(a, b) < GRAD_TOL[F64]
    # one point against itself alone: K = 1 whatever the point, every gradient 0
    x = X[:1]
    one = rfmfast.kernel_matmul(x, x.detach(), V[:1], kernel=kernel, backend=backend)
    (g,) = torch.autograd.grad(one.sum(), (x,))
    assert float(g.abs().max()) == 0.0


# --- what is not differentiable: a clear error, never a silent zero --------------------------


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("op", ["kernel_matmul", "kernel_matrix"])
def test_second_derivatives_raise(op, backend):
    X, Z, V, _ = _leaves(5, 4, 3, 2, "none", dev=device(backend))
    out = (
        rfmfast.kernel_matmul(X, Z, V, backend=backend)
        if op == "kernel_matmul"
        else rfmfast.kernel_matrix(X, Z, backend=backend)
    )
    (gX,) = torch.autograd.grad(out.square().sum(), (X,), create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        gX.sum().backward()


@pytest.mark.parametrize("backend", backends("cpu"))
def test_l1_laplace_gradient_at_a_zero_diagonal_entry_is_not_finite(backend):
    """d/dm_a of the l1_laplace kernel (through S = M^{1/2}) is infinite at m_a = 0: the
    gradient says so (NaN or inf, as the reference's autograd gives), it is never a silent 0;
    the other entries stay finite and agree with the reference."""
    X, Z, V, _ = _leaves(6, 5, 3, 2, "none")
    m = torch.tensor([0.7, 0.0, 1.2], dtype=F64, requires_grad=True)
    out = rfmfast.kernel_matmul(X, Z, V, kernel="l1_laplace", M=m, backend=backend)
    (g,) = torch.autograd.grad(out.sum(), (m,))
    mr = m.detach().requires_grad_()
    ref = rfmfast.kernel_matmul(X, Z, V, kernel="l1_laplace", M=mr, backend="reference")
    (r,) = torch.autograd.grad(ref.sum(), (mr,))
    assert not bool(torch.isfinite(g[1])) and not bool(torch.isfinite(r[1]))
    keep = torch.tensor([0, 2])
    assert _rel(g[keep], r[keep]) < GRAD_TOL[F64]


@pytest.mark.parametrize("backend", backends("cpu"))
def test_triangle_and_out_with_gradients(backend):
    """triangle="lower" (served by the symmetric matrix) and out= stay differentiable: the
    gradient goes through the copy into the buffer."""
    X, _, _, P = _leaves(6, 6, 3, 1, "diag", seed=8)
    ref = rfmfast.kernel_matrix(X, M=P, backend="reference")
    want = _grads(ref, [X, P])
    low = rfmfast.kernel_matrix(X, M=P, backend=backend, triangle="lower")
    for a, b in zip(_grads(low, [X, P]), want):
        assert _rel(a, b) < GRAD_TOL[F64]
    buf = torch.empty(6, 6, dtype=F64)
    res = rfmfast.kernel_matrix(X, M=P, backend=backend, out=buf)
    assert res is buf and res.requires_grad
    for a, b in zip(_grads(res, [X, P]), want):
        assert _rel(a, b) < GRAD_TOL[F64]


@pytest.mark.parametrize("backend", backends("cpu"))
def test_no_grad_calls_are_unchanged(backend):
    """Without grad (torch.no_grad, or no input requiring it) the op returns a plain tensor, and
    kernel_matrix(out=) still writes the buffer in place."""
    X, Z, V, _ = _leaves(6, 5, 3, 2, "none")
    with torch.no_grad():
        out = rfmfast.kernel_matmul(X, Z, V, backend=backend)
        buf = torch.empty(6, 5, dtype=F64)
        K = rfmfast.kernel_matrix(X, Z, backend=backend, out=buf)
    assert not out.requires_grad and out.grad_fn is None
    assert K is buf and not buf.requires_grad
    plain = rfmfast.kernel_matmul(X.detach(), Z.detach(), V.detach(), backend=backend)
    assert plain.grad_fn is None and torch.equal(plain, out)


# --- the backward ops: custom ops with fakes, and the registration ---------------------------


@pytest.mark.parametrize("backend", backends("cpu"))
def test_backward_ops_pass_opcheck(backend):
    import rfmfast.ops.kernel_matmul.cpu  # noqa: F401  (registers the ops)
    import rfmfast.ops.kernel_matrix.cpu  # noqa: F401

    ops = torch.ops.rfmfast
    X, Z, V = torch.randn(7, 3, dtype=F64), torch.randn(5, 3, dtype=F64), torch.randn(5, 2)
    V = V.to(F64)
    G, GK = torch.randn(7, 2, dtype=F64), torch.randn(7, 5, dtype=F64)
    M = torch.eye(3, dtype=F64) * 0.5
    fast = ("test_schema", "test_faketensor")
    for need in ((True, True, True), (True, False, False), (False, True, False)):
        torch.library.opcheck(
            ops.kernel_matmul_backward_cpu, (X, Z, V, G, "laplace", 2.0, M, *need), test_utils=fast
        )
        torch.library.opcheck(
            ops.kernel_matrix_backward_cpu, (X, Z, GK, "l1_laplace", 2.0, M, *need), test_utils=fast
        )
    # a forward op with inputs requiring grad: its autograd registration, and its backward
    # traced by AOTAutograd (the other forward op's is traced by tests/test_compile.py)
    Xg, Zg, Vg = (a.clone().requires_grad_() for a in (X, Z, V))
    torch.library.opcheck(ops.kernel_matmul_cpu, (Xg, Zg, Vg, "gaussian", 1.5, M))
