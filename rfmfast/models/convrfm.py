"""ConvRFM: a convolutional kernel machine that learns a patch feature matrix M from the patch AGOP.

Reference-level implementation (plain torch, float64, blocked) of the method of the
convolutional neural feature ansatz paper (Beaglehole, Radhakrishnan, Pandit, Belkin) as its public
notebooks compute it (aradha/agop_feature_learning, kernel_machine_agop/conv_rfm; aradha/convrfm,
deep_conv_rfm). See docs/convrfm.md for the conventions and what was chosen where the reference is
ambiguous.

Notation. An image x (c, h, w) has patches x[p] in R^D, D = c q^2, one per position p of the
(h', w') grid (VALID, or zero / circular padding of q // 2 on each side), each ordered
(channel, row, col); positions row-major; P = h' w'. A symmetric PSD matrix S maps every patch,
x[p] -> S x[p]; the learned feature matrix is M = S^2 (proportional to the patch AGOP).

Kernels (constant factors that the training-maximum normalisation removes are dropped):

* ``cntk``: NTK of the "vanilla" conv net Conv(q) -> sqrt(2) ReLU -> [Conv(q) -> sqrt(2) ReLU]^(L-1)
  -> Flatten -> Dense, no biases (neural-tangents stax, W_std = q, b_std = 0, ABRelu(0, sqrt 2)).
  The readout flattens, so only same-position covariances are needed. With u_p = <Sx[p], Sz[p]>,
  a_p = |Sx[p]|^2, b_p = |Sz[p]|^2, r = sqrt(a b), c = u / r, theta = arccos c:
  layer 1 has Sigma = Theta = u; a ReLU maps Sigma -> r J1(c) / pi, Theta -> Theta kappa0(c)
  (J1(c) = sqrt(1 - c^2) + (pi - theta) c, kappa0(c) = (pi - theta) / pi) and keeps the
  diagonals; a further Conv(q) averages Sigma, Theta and the diagonals over the q x q VALID
  neighbourhood and adds Sigma to Theta; the readout is K = mean_p (Sigma_p + Theta_p).
  Depth 1: K(x, z) = (1/P) sum_p [r_p J1(c_p) / pi + u_p kappa0(c_p)].
* ``patch_laplace``: K(x, z) = (1/P) sum_p exp(-||S(x[p] - z[p])|| / bandwidth).

Gradient conventions (the patch AGOP differentiates the kernel with autograd):

* J1's derivative is kappa0 (exact and finite everywhere, also at c = 1).
* kappa0's derivative 1 / (pi sqrt(1 - c^2)) is infinite at a self-pair (a query patch equal to a
  training patch, c = 1). neural-tangents guards arccos there so that no gradient flows through
  the angle, and the notebooks then replace NaN by 0 (jnp.nan_to_num). Here the angle's gradient is
  set to 0 wherever 1 - |c| <= 1e-9 (a float64 self-pair computes c = 1 only up to rounding), and
  any remaining NaN in a patch gradient is replaced by 0.
* All-zero patches: c = u / sqrt(max(a b, 1e-300)), so c = 0 where a patch is zero; the term's
  value is exactly 0 and its gradient finite: no gradient flows through r = sqrt(a b) where a b
  is 0, so against a zero query patch a training patch x contributes kappa0(0) S x = S x / 2 (the
  NTK part only). The Laplace distance's square root has gradient 0 at distance 0 (a self-pair
  or two zero patches), the usual RFM convention for the Laplace kernel's cusp.

Memory. Kernel matrices are computed in blocks of images: a block pair holds the mapped patches of
both blocks, (b_x + b_z) P D float64, and O(P b_x b_z) per-position maps (a few times that for
depth > 1), never (n, m, P, D). Block sizes follow ``block_mb`` (default 64 MB per patch block,
so peak memory is a few hundred MB whatever n and m are). The AGOP holds one query block's
patches with their gradients and the autograd graph of one (query block, training block) pair.
"""

from __future__ import annotations

import math
import numbers
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

__all__ = [
    "ConvRFMClassifier",
    "cntk_kernel",
    "image_patches",
    "make_star_images",
    "patch_agop",
    "patch_kernel",
    "patch_laplace_kernel",
]

KERNELS = ("cntk", "patch_laplace")
#: per kernel name: whether it is the patch-Laplace kernel (else the CNTK); a table, not string
#: comparisons
_PATCH_LAPLACE = {"cntk": False, "patch_laplace": True}
PADDINGS = ("valid", "zero", "circular")
_ANGLE_TOL = 1e-9  # 1 - |c| at or below which the angle carries no gradient (self-pair)
_TINY = 1e-300  # floor under a b before its square root (all-zero patches)
_DTYPE = torch.float64


# --------------------------------------------------------------------------------------- patches
def _pad(X: torch.Tensor, patch_size: int, padding: str) -> torch.Tensor:
    if padding == "valid":
        return X
    k = patch_size // 2
    mode = "constant" if padding == "zero" else "circular"
    return F.pad(X, (k, k, k, k), mode=mode)


def patch_grid(h: int, w: int, patch_size: int, padding: str = "valid") -> tuple[int, int]:
    """The (h', w') grid of patch positions of an (h, w) image."""
    if padding == "valid":
        return h - patch_size + 1, w - patch_size + 1
    k = patch_size // 2
    return h + 2 * k - patch_size + 1, w + 2 * k - patch_size + 1


def _patches_pm(X: torch.Tensor, patch_size: int, padding: str) -> torch.Tensor:
    """Position-major patches (P, n, c q^2), contiguous (the layout of the per-position GEMMs)."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    Xp = _pad(X, patch_size, padding)
    n, c = Xp.shape[:2]
    T = Xp.unfold(2, patch_size, 1).unfold(3, patch_size, 1)  # (n, c, h', w', q, q)
    gh, gw = T.shape[2:4]
    return T.permute(2, 3, 0, 1, 4, 5).reshape(gh * gw, n, c * patch_size**2)


def image_patches(X: torch.Tensor, patch_size: int, padding: str = "valid") -> torch.Tensor:
    """Patches of images X (n, c, h, w): (n, P, c q^2), positions row-major, each patch ordered
    (channel, row, col); ``padding`` "valid", or "zero" / "circular" padding of q // 2 a side."""
    return _patches_pm(X, patch_size, padding).transpose(0, 1)


# ------------------------------------------------------------------------- arc-cosine functions
class _Kappa0(torch.autograd.Function):
    """kappa0(c) = (pi - arccos c) / pi; no gradient where 1 - |c| <= _ANGLE_TOL."""

    @staticmethod
    def forward(ctx, c):
        cc = c.clamp(-1.0, 1.0)
        ctx.save_for_backward(cc)
        return (math.pi - torch.arccos(cc)) / math.pi

    @staticmethod
    def backward(ctx, g):
        (cc,) = ctx.saved_tensors
        s2 = (1.0 - cc * cc).clamp_min(0.0)
        ok = (1.0 - cc.abs()) > _ANGLE_TOL
        d = torch.where(ok, 1.0 / (math.pi * torch.sqrt(torch.where(ok, s2, 1.0))), 0.0)
        return g * d


class _J1(torch.autograd.Function):
    """J1(c) / pi = (sqrt(1 - c^2) + (pi - arccos c) c) / pi; derivative kappa0(c)."""

    @staticmethod
    def forward(ctx, c):
        cc = c.clamp(-1.0, 1.0)
        ctx.save_for_backward(cc)
        th = torch.arccos(cc)
        return (torch.sqrt((1.0 - cc * cc).clamp_min(0.0)) + (math.pi - th) * cc) / math.pi

    @staticmethod
    def backward(ctx, g):
        (cc,) = ctx.saved_tensors
        return g * (math.pi - torch.arccos(cc)) / math.pi


class _SafeSqrt(torch.autograd.Function):
    """sqrt(max(x, 0)) with gradient 0 where x <= 0 (a zero Laplace distance)."""

    @staticmethod
    def forward(ctx, x):
        y = torch.sqrt(x.clamp_min(0.0))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return torch.where(y > 0, g / (2.0 * torch.where(y > 0, y, 1.0)), 0.0)


# ----------------------------------------------------------------------------- block kernels
def _relu_step(sig, ntk, va, vb):
    """One sqrt(2)-ReLU on same-position maps (P, a, b); diagonals va (P, a, 1), vb (P, 1, b)."""
    ab = va * vb
    r = torch.sqrt(ab.clamp_min(_TINY))
    c = sig / r
    r0 = torch.where(ab > _TINY, r, 0.0)  # a zero patch: value exactly 0, no gradient through r
    return r0 * _J1.apply(c), ntk * _Kappa0.apply(c)


def _pool(t: torch.Tensor, grid: tuple[int, int], q: int) -> torch.Tensor:
    """Mean over the q x q VALID neighbourhood of maps t (P, a, b) on ``grid``."""
    P, a, b = t.shape
    h, w = grid
    x = t.permute(1, 2, 0).reshape(a * b, 1, h, w)
    y = F.avg_pool2d(x, q, stride=1)
    return y.reshape(a, b, -1).permute(2, 0, 1)


def _right(Bt: torch.Tensor):
    """The fixed (no-gradient) side of a block pair: (P, D, b) contiguous and norms (P, 1, b)."""
    return Bt.transpose(1, 2).contiguous(), torch.einsum("pbd,pbd->pb", Bt, Bt).unsqueeze(1)


def _block_kernel(At, right, kernel, depth, grid, q, bandwidth):
    """Kernel between position-major mapped patches At (P, a, D) and a prepared right side
    (``_right`` of Bt (P, b, D)): (a, b). Differentiable in At."""
    BtT, vb = right
    u = torch.bmm(At, BtT)  # (P, a, b)
    va = torch.einsum("pad,pad->pa", At, At).unsqueeze(2)  # (P, a, 1)
    if _PATCH_LAPLACE[kernel]:
        d = _SafeSqrt.apply(va + vb - 2.0 * u)
        return torch.exp(-d / bandwidth).mean(0)
    sig, ntk = u, u
    cur = grid
    for layer in range(depth):
        sig, ntk = _relu_step(sig, ntk, va, vb)
        if layer == depth - 1:
            break
        sig = _pool(sig, cur, q)
        ntk = _pool(ntk, cur, q) + sig
        va = _pool(va, cur, q)
        vb = _pool(vb, cur, q)
        cur = (cur[0] - q + 1, cur[1] - q + 1)
    return (sig + ntk).mean(0)


def _block_kernel_fast(At, right, kernel, bandwidth):
    """The same values as ``_block_kernel`` for depth 1 / patch-Laplace, in place, no graph."""
    BtT, vb = right
    u = torch.bmm(At, BtT)  # (P, a, b)
    va = torch.einsum("pad,pad->pa", At, At).unsqueeze(2)
    if _PATCH_LAPLACE[kernel]:
        d = (va + vb).sub_(u, alpha=2.0).clamp_(min=0.0).sqrt_()
        return d.div_(-bandwidth).exp_().mean(0)
    r = (va * vb).sqrt_()
    c = torch.div(u, r.clamp(min=_TINY**0.5)).clamp_(-1.0, 1.0)
    pth = torch.arccos(c).neg_().add_(math.pi)  # pi - theta
    sn = c.mul_(c).neg_().add_(1.0).clamp_(min=0.0).sqrt_()  # sin theta
    # Sigma + Theta = (r sin + (pi - theta) u) / pi + u (pi - theta) / pi
    out = sn.mul_(r).addcmul_(pth, u, value=2.0)
    return out.mean(0).div_(math.pi)


# ------------------------------------------------------------------------------- public kernels
def _as_images(X) -> torch.Tensor:
    if isinstance(X, torch.Tensor):
        return X.detach().to(dtype=_DTYPE, device="cpu")
    return torch.as_tensor(np.asarray(X, dtype=np.float64))


def _check_pair(X, Z, S, patch_size):
    if X.ndim != 4 or Z.ndim != 4 or X.shape[1:] != Z.shape[1:]:
        raise ValueError(
            f"images must be (n, c, h, w) of the same c, h, w; got {tuple(X.shape)} and "
            f"{tuple(Z.shape)}"
        )
    D = X.shape[1] * patch_size**2
    if S is not None and tuple(S.shape) != (D, D):
        raise ValueError(f"S must be ({D}, {D}) for {X.shape[1]} channels and q = {patch_size}")


def _block_rows(P: int, D: int, block_mb: float) -> int:
    return max(1, int(block_mb * 2**20 // (8 * P * D)))


def _mapped_blocks(X, S, patch_size, padding, rows):
    for i in range(0, len(X), rows):
        Pt = _patches_pm(X[i : i + rows], patch_size, padding)
        if S is not None:
            Pt = Pt @ S.T
        yield i, Pt


def patch_kernel(
    X,
    Z,
    S=None,
    *,
    kernel: str = "cntk",
    patch_size: int = 3,
    padding: str = "valid",
    depth: int = 1,
    bandwidth: float = 10.0,
    block_mb: float = 64.0,
) -> torch.Tensor:
    """Kernel matrix (n, m) between images X (n, c, h, w) and Z (m, c, h, w), patches mapped by S
    (D, D; None = identity), float64, computed in blocks (see the module docstring for memory)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    X, Z = _as_images(X), _as_images(Z)
    S = None if S is None else _as_images(S)
    _check_pair(X, Z, S, patch_size)
    n, c, h, w = X.shape
    grid = patch_grid(h, w, patch_size, padding)
    P, D = grid[0] * grid[1], c * patch_size**2
    rows = _block_rows(P, D, block_mb)
    K = torch.empty(n, len(Z), dtype=_DTYPE)
    fast = _PATCH_LAPLACE[kernel] or depth == 1
    with torch.no_grad():
        zblocks = None
        if len(Z) <= rows:
            zblocks = [(j, _right(B)) for j, B in _mapped_blocks(Z, S, patch_size, padding, rows)]
        for i, A in _mapped_blocks(X, S, patch_size, padding, rows):
            zb = zblocks
            if zb is None:
                zb = ((j, _right(B)) for j, B in _mapped_blocks(Z, S, patch_size, padding, rows))
            for j, R in zb:
                blk = (
                    _block_kernel_fast(A, R, kernel, bandwidth)
                    if fast
                    else _block_kernel(A, R, kernel, depth, grid, patch_size, bandwidth)
                )
                K[i : i + A.shape[1], j : j + R[0].shape[2]] = blk
    return K


def cntk_kernel(X, Z, S=None, *, patch_size=3, padding="valid", depth=1, block_mb=64.0):
    """Depth-``depth`` CNTK of the vanilla conv net on S-mapped patches: (n, m)."""
    return patch_kernel(
        X, Z, S, kernel="cntk", patch_size=patch_size, padding=padding, depth=depth,
        block_mb=block_mb,
    )  # fmt: skip


def patch_laplace_kernel(X, Z, S=None, *, patch_size=3, padding="valid", bandwidth=10.0,
                         block_mb=64.0):  # fmt: skip
    """(1/P) sum_p exp(-||S(x[p] - z[p])|| / bandwidth): (n, m)."""
    return patch_kernel(
        X, Z, S, kernel="patch_laplace", patch_size=patch_size, padding=padding,
        bandwidth=bandwidth, block_mb=block_mb,
    )  # fmt: skip


def patch_agop(
    X_query,
    X_train,
    alpha,
    S=None,
    *,
    kernel: str = "cntk",
    patch_size: int = 3,
    padding: str = "valid",
    depth: int = 1,
    bandwidth: float = 10.0,
    block_mb: float = 64.0,
) -> torch.Tensor:
    """Patch AGOP (D, D) of f(x) = sum_i alpha_i K(x, x_i) over the s query images:
    (1/s) sum_{images, positions p, outputs o} g g^T with g = d f_o / d x[p], every patch of a query
    image an independent copy and the gradient taken through S (x[p] -> S x[p]).
    ``alpha`` is (n,) or (n, k); NaN in a gradient is replaced by 0 (self-pair convention)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    Xq, Xt = _as_images(X_query), _as_images(X_train)
    A = _as_images(alpha)
    if A.ndim == 1:
        A = A[:, None]
    S = None if S is None else _as_images(S)
    _check_pair(Xq, Xt, S, patch_size)
    if A.shape[0] != len(Xt):
        raise ValueError(f"alpha has {A.shape[0]} rows for {len(Xt)} training images")
    s, c, h, w = Xq.shape
    grid = patch_grid(h, w, patch_size, padding)
    P, D = grid[0] * grid[1], c * patch_size**2
    rows = _block_rows(P, D, block_mb)

    def train_blocks():  # nothing here requires grad (no no_grad context inside a generator)
        for j, B in _mapped_blocks(Xt, S, patch_size, padding, rows):
            yield j, _right(B)

    tblocks = list(train_blocks()) if len(Xt) <= rows else None
    agop = torch.zeros(D, D, dtype=_DTYPE)
    for i in range(0, s, rows):
        Zq = _patches_pm(Xq[i : i + rows], patch_size, padding).requires_grad_(True)
        for o in range(A.shape[1]):
            Zm = Zq @ S.T if S is not None else Zq
            tb = tblocks if tblocks is not None else train_blocks()
            f = 0.0
            for j, R in tb:
                Kb = _block_kernel(Zm, R, kernel, depth, grid, patch_size, bandwidth)
                f = f + Kb @ A[j : j + R[0].shape[2], o]
            (g,) = torch.autograd.grad(f.sum(), Zq)
            G = torch.nan_to_num(g, nan=0.0).reshape(-1, D)
            agop += G.T @ G
    return agop / s


def _sqrt_psd(M: torch.Tensor) -> torch.Tensor:
    """Symmetric PSD square root (negative eigenvalues from rounding clipped to 0)."""
    evals, evecs = torch.linalg.eigh((M + M.T) / 2)
    return (evecs * evals.clamp_min(0.0).sqrt()) @ evecs.T


# ------------------------------------------------------------------------------------ star data
_STAR_ROWS = {3: [(10, 11)], 4: [(9, 12)], 5: [(7, 14)], 6: [(8, 13)], 7: [(9, 12)],
              8: [(8, 13)], 9: [(8, 10), (11, 13)]}  # fmt: skip


def make_star_images(n_per_class: int, seed: int = 1717, size: int = 32):
    """Star images (3, size, size): class 1 is N(0, 0.3^2) noise with a star of value 1 drawn in
    channels 0-1 at a random offset (0..size-15 in each direction), class 0 is noise; n_per_class
    of each, shuffled. Returns (X float64 (2 n, 3, size, size), y int64 in {0, 1}).

    The random streams follow the reference generator (python ``random`` for the offsets, numpy's
    legacy RandomState for the noise, cast to float32, torch ``randperm`` for the shuffle, all
    seeded with ``seed``), so seed 1717 and n_per_class 1050 give the notebook's 2,100 images."""
    py = __import__("random").Random(seed)
    rs = np.random.RandomState(seed)
    gen = torch.Generator().manual_seed(seed)
    shape = (3, size, size)
    X, y = [], []
    for _ in range(n_per_class):
        dq = py.randint(0, size - 15)
        dr = py.randint(0, size - 15)
        img = (rs.normal(size=shape) * 0.3).astype(np.float32)
        for row, spans in _STAR_ROWS.items():
            for lo, hi in spans:
                img[:2, row + dq, lo + dr : hi + dr] = 1.0
        X.append(img)
        y.append(1)
    for _ in range(n_per_class):
        X.append((rs.normal(size=shape) * 0.3).astype(np.float32))
        y.append(0)
    Xt = torch.from_numpy(np.stack(X)).to(_DTYPE)
    yt = torch.tensor(y, dtype=torch.int64)
    idx = torch.randperm(len(Xt), generator=gen)
    return Xt[idx], yt[idx]


# ------------------------------------------------------------------------------------ estimator
def _check_int(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def _check_images(X, name):
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a numeric array of images (n, c, h, w): {e}") from None
    if arr.ndim != 4:
        raise ValueError(f"{name} must be 4-D images (n, c, h, w), got shape {arr.shape}")
    if arr.shape[0] == 0 or 0 in arr.shape[1:]:
        raise ValueError(f"{name} has an empty dimension: shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return torch.from_numpy(arr)


class ConvRFMClassifier(ClassifierMixin, BaseEstimator):
    """ConvRFM classifier (scikit-learn style) on images (n, c, h, w).

    Iteration 0 fits kernel ridge regression to one-hot labels with S = I; each of the ``iters``
    further iterations maps patches by S = AGOP^(1/2) / ||AGOP^(1/2)||_F, where the patch AGOP is
    that of the previous iterate's predictor over ``agop_samples`` training images, and refits.
    Every kernel matrix is divided by its training maximum and (reg I + K) alpha = Y is solved.
    If ``X_val, y_val`` are passed to ``fit`` the iterate with the best validation accuracy
    (earliest on ties) is kept, otherwise the last; test data is never used.

    Parameters: kernel "cntk" | "patch_laplace"; depth (CNTK conv layers); patch_size q; padding
    "valid" | "zero" | "circular"; iters (AGOP updates); reg; bandwidth (patch-Laplace L);
    agop_samples s; random_state (None: the first s training images, as the reference; otherwise
    a random subset); block_mb (memory per patch block).

    Attributes: classes_, M_ = S_^2 (D, D, proportional to the AGOP), S_, best_iter_, history_
    (one dict per iteration: iteration, train_acc, val_acc, kernel_scale, seconds), iterates_
    (S, alpha, scale per iteration, for ``decision_function(X, iteration=t)``).
    """

    def __init__(
        self,
        kernel="cntk",
        depth=1,
        patch_size=3,
        padding="valid",
        iters=1,
        reg=1e-3,
        bandwidth=10.0,
        agop_samples=20,
        random_state=None,
        block_mb=64.0,
    ):
        self.kernel = kernel
        self.depth = depth
        self.patch_size = patch_size
        self.padding = padding
        self.iters = iters
        self.reg = reg
        self.bandwidth = bandwidth
        self.agop_samples = agop_samples
        self.random_state = random_state
        self.block_mb = block_mb

    def _check_params(self, h, w):
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        _check_int("patch_size", self.patch_size, 1)
        _check_int("depth", self.depth, 1)
        _check_int("iters", self.iters, 0)
        _check_int("agop_samples", self.agop_samples, 1)
        for name in ("reg", "bandwidth", "block_mb"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
                raise ValueError(f"{name} must be a positive number, got {v!r}")
            if not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v!r}")
        gh, gw = patch_grid(h, w, self.patch_size, self.padding)
        if gh < 1 or gw < 1:
            raise ValueError(
                f"patch_size {self.patch_size} does not fit images {h} x {w} with padding "
                f"{self.padding!r}"
            )
        if not _PATCH_LAPLACE[self.kernel] and self.depth > 1:
            q = self.patch_size
            need = (q - 1) * (self.depth - 1)
            if gh - need < 1 or gw - need < 1:
                raise ValueError(
                    f"depth {self.depth} CNTK needs a patch grid of at least {need + 1} a side; "
                    f"images {h} x {w} give {gh} x {gw}"
                )

    def _kernel(self, X, Z, S):
        return patch_kernel(
            X, Z, S, kernel=self.kernel, patch_size=self.patch_size, padding=self.padding,
            depth=self.depth, bandwidth=self.bandwidth, block_mb=self.block_mb,
        )  # fmt: skip

    def fit(self, X, y, X_val=None, y_val=None):
        Xt = _check_images(X, "X")
        n, c, h, w = Xt.shape
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != n:
            raise ValueError(f"y must be 1-D with {n} labels (one per image), got shape {y.shape}")
        self._check_params(h, w)
        classes, yi = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError("y must contain at least two classes")
        if (X_val is None) != (y_val is None):
            raise ValueError("pass both X_val and y_val, or neither")
        if X_val is not None:
            Xv = _check_images(X_val, "X_val")
            if Xv.shape[1:] != Xt.shape[1:]:
                raise ValueError(
                    f"X_val images have shape {tuple(Xv.shape[1:])}, X has {tuple(Xt.shape[1:])}"
                )
            y_val = np.asarray(y_val)
            if y_val.ndim != 1 or len(y_val) != len(Xv):
                raise ValueError(f"y_val must be 1-D with {len(Xv)} labels, got {y_val.shape}")
        self.classes_ = classes
        self.n_features_in_ = c * h * w
        Y = torch.zeros(n, len(classes), dtype=_DTYPE)
        Y[torch.arange(n), torch.from_numpy(yi)] = 1.0
        s = min(self.agop_samples, n)
        if self.random_state is None:
            agop_idx = np.arange(s)
        else:
            rs = (
                self.random_state
                if isinstance(self.random_state, np.random.RandomState)
                else np.random.RandomState(self.random_state)
            )
            agop_idx = np.sort(rs.choice(n, s, replace=False))
        self.X_train_ = Xt
        self.history_, self.iterates_ = [], []
        S = None
        best = (-1.0, 0)
        for t in range(self.iters + 1):
            t0 = time.perf_counter()
            if t > 0:
                S_prev, alpha, scale = self.iterates_[-1]
                G = patch_agop(
                    Xt[agop_idx], Xt, alpha / scale, S_prev, kernel=self.kernel,
                    patch_size=self.patch_size, padding=self.padding, depth=self.depth,
                    bandwidth=self.bandwidth, block_mb=self.block_mb,
                )  # fmt: skip
                R = _sqrt_psd(G)
                nrm = torch.linalg.norm(R)
                if not nrm > 0:
                    raise RuntimeError(f"the patch AGOP is zero at iteration {t}")
                S = R / nrm
            K = self._kernel(Xt, Xt, S)
            scale = float(K.max())
            A = torch.linalg.solve(self.reg * torch.eye(n, dtype=_DTYPE) + K / scale, Y)
            self.iterates_.append((S, A, scale))
            train_acc = float((torch.argmax(K / scale @ A, 1).numpy() == yi).mean())
            val_acc = None
            if X_val is not None:
                val_acc = float(np.mean(self.predict(Xv, iteration=t) == y_val))
                if val_acc > best[0]:
                    best = (val_acc, t)
            self.history_.append(
                {"iteration": t, "train_acc": train_acc, "val_acc": val_acc,
                 "kernel_scale": scale, "seconds": time.perf_counter() - t0}
            )  # fmt: skip
        self.best_iter_ = best[1] if X_val is not None else self.iters
        S_best = self.iterates_[self.best_iter_][0]
        D = c * self.patch_size**2
        self.S_ = torch.eye(D, dtype=_DTYPE) if S_best is None else S_best
        self.M_ = self.S_ @ self.S_
        return self

    def _check_fitted_input(self, X):
        if not hasattr(self, "iterates_"):
            raise NotFittedError("this ConvRFMClassifier is not fitted yet; call fit first")
        Xq = _check_images(X, "X")
        if Xq.shape[1:] != self.X_train_.shape[1:]:
            raise ValueError(
                f"X images have shape {tuple(Xq.shape[1:])}, fitted on "
                f"{tuple(self.X_train_.shape[1:])}"
            )
        return Xq

    def decision_function(self, X, iteration=None):
        """Scores (n, n_classes) of the selected iterate, or of iteration ``iteration``."""
        Xq = self._check_fitted_input(X)
        t = self.best_iter_ if iteration is None else iteration
        if not 0 <= t < len(self.iterates_):
            raise ValueError(f"iteration must be in [0, {len(self.iterates_) - 1}], got {t}")
        S, A, scale = self.iterates_[t]
        return (self._kernel(Xq, self.X_train_, S) / scale @ A).numpy()

    def predict(self, X, iteration=None):
        scores = self.decision_function(X, iteration)
        return self.classes_[np.argmax(scores, axis=1)]
