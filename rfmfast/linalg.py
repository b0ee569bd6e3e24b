"""Iterative matrix inversion and a measured order of convergence (docs/linalg.md).

    convergence_order(errors, *, floor=0.0)                         -> (n - 2,) q_t (NaN: undefined)
    newton_schulz_inverse(A, X0=None, *, iters, tol, error, norm)   -> InverseResult (order 2)
    kaczmarz_inverse(A, X0=None, *, epochs, tol, seed, error, norm) -> InverseResult (order 1)

The adaptive-step SGD of Radhakrishnan, Belkin and Uhler ("Local quadratic convergence of
stochastic gradient descent with adaptive step size", arXiv 2112.14872) is *not* implemented:
only the paper's abstract was available, not its loss, sampling or step-size rule, and no
guessed rule stands in for it (docs/linalg.md). The two methods above are the deterministic
quadratic oracle and the stochastic linear-rate control it is to be compared with.

Every function takes a square, finite, non-singular A (numpy array or torch tensor; any real
dtype, computed in float64 on A's device) and refuses anything else before any work. numpy in
gives numpy out (the package's convention); a tensor gives float64 tensors on its device.
The error of an iterate is the residual ``||I - A X||`` (error="residual", Newton-Schulz's
default) or the forward error ``||X - A^{-1}||`` (error="forward", Kaczmarz's default: the
quantity it contracts), Frobenius by default or spectral (norm="2"), recorded once per epoch:
``errors[0]`` is the start, ``errors[k]`` the error after epoch k. One epoch is one pass over
A's information: one Newton-Schulz iteration, or d Kaczmarz row steps; both cost O(d^3) flops
per epoch, so epochs compare like for like.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from ._threads import torch_single_thread

__all__ = ["InverseResult", "convergence_order", "newton_schulz_inverse", "kaczmarz_inverse"]

_EPS = float(np.finfo(np.float64).eps)
_NORMS = ("fro", "2")
_INF = float("inf")
_ERRORS = ("residual", "forward")
# at most this d, a CPU problem runs its torch ops on one thread: (d, d) GEMMs of a few MFLOP
# gain nothing from a second thread, and on a shared machine OpenMP's spinning waits cost far
# more (measured: 50 x 50 Kaczmarz epochs 20x slower on two busy cores than on one)
_SINGLE_THREAD_MAX_D = 256


@dataclass
class InverseResult:
    """What an iterative inversion returns.

    X: (d, d) float64, the last iterate (numpy if A was not a tensor, else a tensor on A's device).
    errors: (epochs_run + 1,) float64 numpy, the error (residual or forward) at the start and
        after each epoch.
    method: "newton_schulz" or "kaczmarz".
    steps_per_epoch: updates per epoch (1 for Newton-Schulz, d for Kaczmarz).
    converged: whether the last error is at most tol.
    stop: why it stopped: "tol", "max_epochs", "stalled" (no new minimum in the last 3
        Newton-Schulz iterations or 10 Kaczmarz epochs: the round-off floor) or "diverged" (an
        error above 1e8 times the start, a non-finite one, or no new minimum with the last
        error above the start).
    """

    X: np.ndarray | torch.Tensor
    errors: np.ndarray
    method: str
    steps_per_epoch: int
    converged: bool
    stop: str


def convergence_order(errors, *, floor: float = 0.0) -> np.ndarray:
    """Measured order of convergence of an error sequence e_0, e_1, ..., e_{n-1}.

    q_t = log(e_{t+1} / e_t) / log(e_t / e_{t-1}),  t = 1 .. n-2; returns a (n - 2,) float64
    array (empty for n < 3), entry t - 1 holding q_t. For e_t = C rho^(p^t) it is p exactly:
    1 for a linear rate, 2 for a quadratic one, 3 for a cubic one.

    Rule for undefined entries: q_t is NaN unless e_{t-1}, e_t and e_{t+1} are all finite and
    above ``floor`` and e_t != e_{t-1}. So a zero error (exact convergence), a non-finite one
    (divergence, or a missing record) and, with ``floor`` set to the round-off level of the
    problem (e.g. 1e3 * d * eps for a residual of order-1 entries), errors that measure rounding
    rather than the method give NaN, not a number that looks like an order; take np.nanmedian.
    Negative errors are refused (an error is a norm). Cost O(n).
    """
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 1:
        raise ValueError(f"errors must be 1-D (one error per epoch), got shape {e.shape}")
    if not np.isfinite(floor) or floor < 0:
        raise ValueError(f"floor must be a finite number >= 0, got {floor}")
    if bool((e < 0).any()):  # NaN compares False: NaN is allowed, and gives NaN orders
        raise ValueError("errors must be >= 0 (they are norms); a negative one was given")
    if e.size < 3:
        return np.empty(0)
    ok = np.isfinite(e) & (e > floor)
    prev, cur, nxt = e[:-2], e[1:-1], e[2:]
    valid = ok[:-2] & ok[1:-1] & ok[2:] & (cur != prev)
    q = np.full(e.size - 2, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        q[valid] = np.log(nxt[valid] / cur[valid]) / np.log(cur[valid] / prev[valid])
    return q


# ---------------------------------------------------------------- input checks


def _square(A, name: str = "A") -> tuple[torch.Tensor, bool]:
    """A as a float64 tensor (on its device), and whether the caller gave a tensor."""
    if isinstance(A, torch.Tensor):
        is_tensor = True
        if A.is_complex():
            raise TypeError(f"{name} must be real, got {A.dtype}")
        t = A.detach()
    else:
        is_tensor = False
        a = np.asarray(A)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a real numeric matrix, got dtype {a.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(t.shape)}")
    if t.shape[0] != t.shape[1]:
        raise ValueError(f"{name} must be square, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t, is_tensor


def _check_nonsingular(A: torch.Tensor) -> None:
    """Refuse a zero row, and a matrix whose condition number is beyond 1 / (d eps): its inverse
    would be rounding noise. One SVD of A: O(d^3), about two Newton-Schulz iterations."""
    d = A.shape[0]
    zero = torch.nonzero(~A.abs().amax(dim=1).gt(0)).flatten()
    if zero.numel():
        raise ValueError(f"A is singular: row {int(zero[0])} is zero")
    s = torch.linalg.svdvals(A)
    smax, smin = float(s[0]), float(s[-1])
    if not smin > d * _EPS * smax:
        cond = float("inf") if smin == 0 else smax / smin
        raise ValueError(
            f"A looks singular: its condition number is {cond:.3g} (largest singular value "
            f"{smax:.3g}, smallest {smin:.3g}), beyond 1 / (d eps) = {1 / (d * _EPS):.3g}"
        )


def _start(X0, A: torch.Tensor) -> torch.Tensor | None:
    if X0 is None:
        return None
    X, _ = _square(X0, "X0")
    if X.shape != A.shape:
        raise ValueError(f"X0 has shape {tuple(X.shape)} but A has {tuple(A.shape)}")
    return X.to(A.device).clone()


def _check_count(k, name: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {k!r}")
    return int(k)


def _check_tol(tol) -> float:
    tol = float(tol)
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol}")
    return tol


def _check_norm(norm: str) -> str:
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {', '.join(map(repr, _NORMS))}, got {norm!r}")
    return norm


def _check_error(error: str) -> str:
    if error not in _ERRORS:
        raise ValueError(f"error must be one of {', '.join(map(repr, _ERRORS))}, got {error!r}")
    return error


def _norm(M: torch.Tensor, norm: str) -> float:
    if norm == "fro":
        return float(torch.linalg.vector_norm(M))
    return float(torch.linalg.matrix_norm(M, ord=2))


def _residual(A: torch.Tensor, X: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = I - A X (one GEMM, no allocation)."""
    torch.matmul(A, X, out=out)
    out.neg_().diagonal().add_(1.0)
    return out


def _error_fn(A: torch.Tensor, error: str, norm: str):
    """X -> the recorded error of X: ||I - A X|| or ||X - A^{-1}|| (A^{-1} by one LU now)."""
    work = torch.empty_like(A)
    if error == "residual":
        return lambda X: _norm(_residual(A, X, work), norm)
    ref = torch.linalg.inv(A)
    return lambda X: _norm(torch.sub(X, ref, out=work), norm)


def _threads(A: torch.Tensor):
    """The thread rule above, as a context manager."""
    if A.device.type == "cpu" and A.shape[0] <= _SINGLE_THREAD_MAX_D:
        return torch_single_thread()
    return nullcontext()


def _stop_reason(errors: list[float], tol: float, patience: int) -> str | None:
    """ "diverged", "tol", "stalled" (no new minimum in the last ``patience`` epochs: the
    round-off floor) or None (go on)."""
    e = errors[-1]
    if not np.isfinite(e) or e > 1e8 * max(errors[0], 1e-300):
        return "diverged"
    if e <= tol:
        return "tol"
    if len(errors) > patience and min(errors[-patience:]) >= min(errors[:-patience]):
        # no progress: at the round-off floor, or growing from the start (a start outside the
        # region of convergence, before the error has grown 1e8 times)
        return "diverged" if e > errors[0] else "stalled"
    return None


def _result(X, errors, method, steps, tol, stop, is_tensor) -> InverseResult:
    e = np.asarray(errors, dtype=np.float64)
    return InverseResult(
        X=X if is_tensor else X.cpu().numpy(),
        errors=e,
        method=method,
        steps_per_epoch=steps,
        converged=bool(e[-1] <= tol),
        stop=stop,
    )


# ---------------------------------------------------------------- Newton-Schulz


def newton_schulz_inverse(
    A,
    X0=None,
    *,
    iters: int = 100,
    tol: float = 1e-12,
    error: str = "residual",
    norm: str = "fro",
) -> InverseResult:
    """Newton-Schulz (Hotelling-Bodewig) iteration for A^{-1}: the deterministic quadratic oracle.

    Shapes: A (d, d) square, non-singular; X0 (d, d) or None. Returns an InverseResult whose
    ``errors`` has one entry per iteration (an epoch is one iteration) plus the start.

    Formula: X_{t+1} = X_t (2I - A X_t). With R_t = I - A X_t this is exactly
    R_{t+1} = R_t^2, so R_t = R_0^(2^t): quadratic convergence whenever the spectral radius of
    R_0 is below 1, and divergence when it is above. The default start
    X0 = A^T / (||A||_1 ||A||_inf) makes I - A X0 symmetric with eigenvalues in [0, 1) for any
    non-singular A (since ||A||_2^2 <= ||A||_1 ||A||_inf), so it always converges, but slowly
    at first when A is ill-conditioned (about log2(kappa^2) iterations before the error drops).
    From that start the spectral-norm residual is exactly rho^(2^t): measured order 2 at every
    iteration (norm="2"); the Frobenius norm mixes the eigenvalues and reaches 2 near the
    solution.

    error: "residual" (default), ||I - A X_t||; "forward", ||X_t - A^{-1}|| (A^{-1} from one
    LU inverse before the first iteration). norm: "fro" (default) or "2" (spectral).
    Stops at ``errors[-1] <= tol``, after ``iters`` iterations, at the round-off floor (no
    new minimum in 3 iterations) or on divergence; ``stop`` says which.
    Cost per iteration: two d x d GEMMs (4 d^3 flops): R_t = I - A X_t, then X_t (I + R_t);
    the residual's norm comes with the first (a spectral norm adds one SVD, a forward error
    one subtraction). Memory: A, X, X_{t+1} and R in float64 (4 d^2 * 8 bytes; one more (d, d)
    for error="forward").
    Before any work: A square, finite and non-singular (one SVD, ``_check_nonsingular``).
    """
    A, is_tensor = _square(A)
    iters, tol = _check_count(iters, "iters"), _check_tol(tol)
    norm, error = _check_norm(norm), _check_error(error)
    X = _start(X0, A)
    with _threads(A):
        return _newton_schulz(A, X, iters, tol, error, norm, is_tensor)


def _newton_schulz(A, X, iters, tol, error, norm, is_tensor) -> InverseResult:
    _check_nonsingular(A)
    if X is None:
        scale = float(torch.linalg.matrix_norm(A, ord=1) * torch.linalg.matrix_norm(A, ord=_INF))
        X = A.T / scale
    forward = None if error == "residual" else _error_fn(A, error, norm)
    R = _residual(A, X, torch.empty_like(A))
    errors = [_norm(R, norm) if forward is None else forward(X)]
    stop = _stop_reason(errors, tol, 3) or "max_epochs"
    if stop == "max_epochs":
        for _ in range(iters):
            X = X @ _plus_identity(R)  # X_t (2I - A X_t)
            _residual(A, X, R)
            errors.append(_norm(R, norm) if forward is None else forward(X))
            reason = _stop_reason(errors, tol, 3)
            if reason:
                stop = reason
                break
    return _result(X, errors, "newton_schulz", 1, tol, stop, is_tensor)


def _plus_identity(R: torch.Tensor) -> torch.Tensor:
    """R + I in place (I - A X becomes 2I - A X), returned."""
    R.diagonal().add_(1.0)
    return R


# ---------------------------------------------------------------- randomized Kaczmarz


def _kaczmarz_epoch(A: torch.Tensor, X: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The k sequential row projections X <- X + a_i (e_i^T - a_i^T X) / ||a_i||^2, i = rows[0],
    rows[1], ..., computed exactly with BLAS-3 (Kaczmarz is Gauss-Seidel on A A^T Y = I):
    the j-th step's row coefficient c_j = (e_{i_j} - X^T a_{i_j} - sum_{l<j} c_l a_{i_l}^T a_{i_j})
    / ||a_{i_j}||^2 is forward substitution, i.e. C T = E - X^T U^T with U the drawn rows (k, d),
    T the upper triangle of U U^T (its diagonal the ||a_i||^2), E the drawn columns of I. Then
    X_new = X + U^T C^T. Same iterates as the loop of row steps up to rounding (a test checks)."""
    U = A.index_select(0, rows)  # (k, d)
    T = torch.triu(U @ U.T)  # (k, k)
    rhs = -(X.T @ U.T)  # (d, k): -X^T a_{i_j}
    rhs[rows, torch.arange(rows.numel(), device=rows.device)] += 1.0  # + e_{i_j}
    C = torch.linalg.solve_triangular(T, rhs, upper=True, left=False)  # (d, k)
    return X.addmm_(U.T, C.T)


def kaczmarz_inverse(
    A,
    X0=None,
    *,
    epochs: int = 200,
    tol: float = 1e-12,
    seed: int = 0,
    error: str = "forward",
    norm: str = "fro",
) -> InverseResult:
    """Randomized Kaczmarz (Strohmer-Vershynin) on A X = I: the stochastic linear-rate control.

    Shapes: A (d, d) square, non-singular; X0 (d, d) or None (zeros). Returns an InverseResult
    whose ``errors`` has one entry per epoch (d row steps) plus the start.

    Formula: a step draws row i with probability ||a_i||^2 / ||A||_F^2 (a_i^T the i-th row of
    A; with replacement, seeded: numpy's default_rng(seed), d draws per epoch) and projects
    every column of X onto the hyperplane of equation i, a_i^T X = e_i^T, with the
    1 / ||a_i||^2 step:
        X <- X + a_i (e_i^T - a_i^T X) / ||a_i||^2.
    The d right-hand sides (the columns of I) share each row draw. Each projection is
    orthogonal onto a set that holds A^{-1}, so ||X - A^{-1}||_F never grows, and in
    expectation its square contracts by at least 1 - sigma_min(A)^2 / ||A||_F^2 per step: a
    linear rate, order 1, about exp(-d sigma_min^2 / (2 ||A||_F^2)) per epoch.

    error: "forward" (default), ||X - A^{-1}|| with A^{-1} from one LU inverse before the
    first epoch: the quantity Kaczmarz contracts. "residual": ||I - A X||, which Kaczmarz does
    not decrease monotonically; its per-epoch ratios are too noisy for a measured order.
    norm: "fro" (default) or "2" (spectral), for either error.

    Stops at ``errors[-1] <= tol``, after ``epochs`` epochs, at the round-off floor (no new
    minimum in 10 epochs) or on divergence; ``stop`` says which.
    Cost: an epoch's d steps run exactly as one blocked update (``_kaczmarz_epoch``: three
    GEMMs and one triangular solve, about 7 d^3 flops against 4 d^3 for the loop of d row
    steps, but at BLAS-3 speed instead of d Python-level steps), plus one GEMM for the error.
    Memory: A, X, the reference inverse (error="forward") and about four (d, d) work matrices.
    Before any work: A square, finite and non-singular (one SVD, ``_check_nonsingular``).
    """
    A, is_tensor = _square(A)
    epochs, tol = _check_count(epochs, "epochs"), _check_tol(tol)
    norm, error = _check_norm(norm), _check_error(error)
    seed = int(seed)
    X = _start(X0, A)
    with _threads(A):
        return _kaczmarz(A, X, epochs, tol, seed, error, norm, is_tensor)


def _kaczmarz(A, X, epochs, tol, seed, error, norm, is_tensor) -> InverseResult:
    _check_nonsingular(A)
    d = A.shape[0]
    if X is None:
        X = torch.zeros_like(A)
    p = (A * A).sum(dim=1).cpu().numpy()
    p = p / p.sum()
    rng = np.random.default_rng(seed)
    measure = _error_fn(A, error, norm)
    errors = [measure(X)]
    stop = _stop_reason(errors, tol, 10) or "max_epochs"
    if stop == "max_epochs":
        for _ in range(epochs):
            rows = torch.from_numpy(rng.choice(d, size=d, p=p)).to(A.device)
            X = _kaczmarz_epoch(A, X, rows)
            errors.append(measure(X))
            reason = _stop_reason(errors, tol, 10)
            if reason:
                stop = reason
                break
    return _result(X, errors, "kaczmarz", d, tol, stop, is_tensor)
