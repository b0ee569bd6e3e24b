"""In-context learning: the feature map of a simplified transformer (docs/icl.md).

After Abedsoltan, Radhakrishnan, Wu and Belkin, "Context-scaling versus task-scaling in in-context
learning" (arXiv 2410.12783, 2024). What docs/icl.md says about the paper's text holds here: the
paper's abstract and third-party summaries were reachable, its method section was not, so the
token layout and the attention normalization below are stated assumptions.

Data (noiseless linear regression): a task is w ~ N(0, I_d); a prompt is n context pairs
(x_i, y_i = w.x_i) and a query x_q (x ~ N(0, I_d)), laid out as the (n + 1, d + 1) matrix

    A = [[x_1, y_1], ..., [x_n, y_n], [x_q, 0]]          (one token per row)

Training prompts draw w from a fixed pool of `tasks` tasks (fresh x's every prompt); test
prompts draw fresh w's: error = MSE / d on unseen tasks (predicting 0 scores 1).

    batched_kernel_smoother(Xq, Xc, Yc, kernel, bandwidth)  (B, q, d), (B, n, d), (B, n, c)
                                                            -> (B, q, c)
    KernelFeatureMap (psi)   A -> (B, d + 1): the attention output at the query token, with the
                             key, query and value weights removed (identity): sum_i k(x_q, x_i)
                             (x_i, y_i) / n; its last entry is the kernel-smoother estimate of y_q
    PsiPredictor             psi alone: y_hat = psi(A)[-1] (no parameters)
    SimplifiedTransformer    one block: h = A_q + psi(A), y_hat = (h + MLP(h))[-1]
    PromptMLP                y_hat = MLP(vec(A))
    PsiPromptMLP             y_hat = MLP([psi(A), vec(A)])
    train(model, pool, n)    Adam, seeded; evaluate(model, n, d) -> MSE / d on fresh tasks
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from .._threads import torch_single_thread

#: kernel -> the normalizer it takes by default ("count": 1/n; "sum": 1/sum_i k, Nadaraya-Watson)
KERNELS = {"linear": "count", "exp": "sum", "gaussian": "sum", "laplace": "sum"}
NORMALIZERS = ("count", "sum")
#: how each kernel weighs a pair, as data (no string branches): "linear" weights are x.z itself
#: (signed); the others are exp(log-weight), the log-weight from x.z ("exp") or from the squared
#: distance ("gaussian", "laplace")
_LINEAR = {"linear": True, "exp": False, "gaussian": False, "laplace": False}
_FROM_DISTANCE = {"linear": False, "exp": False, "gaussian": True, "laplace": True}
_LOG_WEIGHT = {
    "exp": lambda dots, bw: dots / bw,
    "gaussian": lambda D2, bw: -D2 / (2.0 * bw * bw),
    "laplace": lambda D2, bw: -D2.sqrt() / bw,
}
#: elements of one chunk's (prompts x q x n) kernel block: memory bound of the smoother
CHUNK_ELEMENTS = 1 << 22
#: the distance rule of rfmfast.kernels: a pair whose GEMM squared distance is at most
#: RESOLVE (|x|^2 + |z|^2) (after centering) is recomputed by coordinate differences
RESOLVE = 1.0 / 16.0


# ---- the batched kernel smoother --------------------------------------------------------------


def _check_smoother_args(Xq, Xc, Yc, kernel, bandwidth, normalize, mask, chunk):
    for name, T in (("Xq", Xq), ("Xc", Xc), ("Yc", Yc)):
        if not isinstance(T, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(T).__name__}")
        if T.ndim != 3:
            raise ValueError(f"{name} must be 3-D (B, rows, cols), got shape {tuple(T.shape)}")
        if not T.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {T.dtype}")
    if not (Xq.dtype == Xc.dtype == Yc.dtype):
        raise TypeError(f"Xq, Xc, Yc must share a dtype, got {Xq.dtype}, {Xc.dtype}, {Yc.dtype}")
    if not (Xq.device == Xc.device == Yc.device):
        raise ValueError("Xq, Xc, Yc must be on one device")
    B, q, d = Xq.shape
    if Xc.shape[0] != B or Yc.shape[0] != B:
        raise ValueError(
            f"batch sizes differ: Xq {Xq.shape[0]}, Xc {Xc.shape[0]}, Yc {Yc.shape[0]}"
        )
    if Xc.shape[2] != d:
        raise ValueError(f"Xq has d = {d} columns, Xc has {Xc.shape[2]}")
    if Yc.shape[1] != Xc.shape[1]:
        raise ValueError(f"Xc has {Xc.shape[1]} context rows, Yc has {Yc.shape[1]}")
    if Xc.shape[1] == 0:
        raise ValueError("a prompt needs at least one context point (n >= 1)")
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if isinstance(bandwidth, (bool, str, bytes)) or not hasattr(bandwidth, "__float__"):
        raise TypeError(f"bandwidth must be a positive number, got {bandwidth!r}")
    bw = float(bandwidth)
    if not (0 < bw < math.inf):
        raise ValueError(f"bandwidth must be a positive finite number, got {bandwidth!r}")
    normalize = KERNELS[kernel] if normalize is None else normalize
    if normalize not in NORMALIZERS:
        raise ValueError(f"normalize must be one of {NORMALIZERS}, got {normalize!r}")
    if _LINEAR[kernel] and normalize == "sum":
        raise ValueError(
            "the linear kernel takes normalize='count': its weights are signed, so their sum "
            "can vanish"
        )
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError("mask must be a bool tensor (B, n)")
        if tuple(mask.shape) != (B, Xc.shape[1]):
            raise ValueError(f"mask must have shape {(B, Xc.shape[1])}, got {tuple(mask.shape)}")
        if mask.device != Xc.device:
            raise ValueError("mask must be on the inputs' device")
        if B and not bool(mask.any(1).all()):
            raise ValueError("every prompt needs at least one unmasked context point")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    for name, T in (("Xq", Xq), ("Xc", Xc), ("Yc", Yc)):
        if T.numel() and not bool(torch.isfinite(T).all()):
            raise ValueError(f"{name} has non-finite entries")
    return bw, normalize


def _sq_distances(Xq: torch.Tensor, Xc: torch.Tensor) -> torch.Tensor:
    """(b, q, n) squared distances by the distance rule: both sets translated by the context's
    mean, a GEMM, and the pairs whose GEMM value cancels (near-duplicates) recomputed exactly."""
    center = Xc.mean(1, keepdim=True, dtype=torch.float64).to(Xc.dtype)
    Q, C = Xq - center, Xc - center
    nq = (Q * Q).sum(-1)  # (b, q)
    nc = (C * C).sum(-1)  # (b, n)
    scale = nq[:, :, None] + nc[:, None, :]
    D2 = (scale - 2.0 * torch.bmm(Q, C.transpose(1, 2))).clamp_(min=0)
    redo = D2 <= RESOLVE * scale
    if bool(redo.any()):
        # differences of the original coordinates: exact for close points (Sterbenz), where
        # the translated ones carry the translation's rounding
        b, i, j = redo.nonzero(as_tuple=True)
        diff = Xq[b, i] - Xc[b, j]
        D2 = D2.index_put((b, i, j), (diff * diff).sum(-1))
    return D2


def _smooth_chunk(Xq, Xc, Yc, kernel, bw, normalize, mask):
    if _LINEAR[kernel]:
        S = torch.bmm(Xq, Xc.transpose(1, 2)) / (bw * bw)  # scores = the weights
        if mask is not None:
            S = S.masked_fill(~mask[:, None, :], 0.0)
        count = Xc.shape[1] if mask is None else mask.sum(1).to(Xq.dtype)[:, None, None]
        return torch.bmm(S, Yc) / count
    # log-weights s (the kernel is exp(s))
    if _FROM_DISTANCE[kernel]:
        s = _LOG_WEIGHT[kernel](_sq_distances(Xq, Xc), bw)
    else:
        s = _LOG_WEIGHT[kernel](torch.bmm(Xq, Xc.transpose(1, 2)), bw)
    if mask is not None:
        s = s.masked_fill(~mask[:, None, :], -math.inf)
    # shift by the row maximum: exact, and no 0/0 when every weight underflows
    top = s.amax(-1, keepdim=True)
    W = torch.exp(s - top)
    num = torch.bmm(W, Yc)
    if normalize == "sum":
        return num / W.sum(-1, keepdim=True)
    count = Xc.shape[1] if mask is None else mask.sum(1).to(Xq.dtype)[:, None, None]
    return num * (torch.exp(top) / count)


def batched_kernel_smoother(
    Xq: torch.Tensor,
    Xc: torch.Tensor,
    Yc: torch.Tensor,
    kernel: str = "linear",
    bandwidth: float = 1.0,
    *,
    normalize: str | None = None,
    mask: torch.Tensor | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """Kernel smoothers over many small prompts: (B, q, d), (B, n, d), (B, n, c) -> (B, q, c).

    out[b, j] = sum_i k(Xq[b, j], Xc[b, i]) Yc[b, i] / N_bj, with, for bandwidth L:

        linear    k = x.z / L^2            (the attention score with identity K, Q)
        exp       k = exp(x.z / L)         (softmax attention at temperature L, with "sum")
        gaussian  k = exp(-|x - z|^2 / (2 L^2))
        laplace   k = exp(-|x - z| / L)

    normalize: "count" (N = the prompt's number of context points) or "sum" (N = sum_i k:
    Nadaraya-Watson); default "count" for linear (which refuses "sum": its weights are signed),
    "sum" for the others. mask (B, n) bool: the context points each prompt uses (ragged prompts
    padded to one n); every prompt keeps at least one. The prompts are processed `chunk` at a
    time (default: as many as keep a chunk's (chunk, q, n) kernel block near CHUNK_ELEMENTS), so
    memory is bounded whatever B. Distances follow rfmfast.kernels' distance rule (translation to
    the context's mean, exact recompute of cancelling pairs): data far from the origin and near
    duplicates come out accurate. exp-type weights are shifted by their row maximum. Gradients
    flow through every input. Returns Yc's dtype and device.
    """
    bw, normalize = _check_smoother_args(Xq, Xc, Yc, kernel, bandwidth, normalize, mask, chunk)
    B, q, _ = Xq.shape
    n, c = Yc.shape[1], Yc.shape[2]
    if B == 0 or q == 0 or c == 0:
        return Xq.new_zeros((B, q, c))
    if chunk is None:
        chunk = max(1, CHUNK_ELEMENTS // max(1, q * n))
    outs = []
    for s in range(0, B, chunk):
        e = min(B, s + chunk)
        m = None if mask is None else mask[s:e]
        outs.append(_smooth_chunk(Xq[s:e], Xc[s:e], Yc[s:e], kernel, bw, normalize, m))
    return outs[0] if len(outs) == 1 else torch.cat(outs, 0)


# ---- data ------------------------------------------------------------------------------------


def _generator(seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(int(seed))


def task_pool(tasks: int, d: int, seed: int = 0) -> torch.Tensor:
    """The fixed pool of training tasks: (tasks, d) rows w ~ N(0, I_d), float32."""
    if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1:
        raise ValueError(f"tasks must be an integer >= 1, got {tasks!r}")
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    return torch.randn(tasks, d, generator=_generator(seed))


def prompt_matrix(X: torch.Tensor, y: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
    """The token layout: X (B, n, d), y (B, n), xq (B, d) -> A (B, n + 1, d + 1), rows
    (x_i, y_i) and the query row (x_q, 0)."""
    B, n, d = X.shape
    A = X.new_zeros((B, n + 1, d + 1))
    A[:, :n, :d] = X
    A[:, :n, d] = y
    A[:, n, :d] = xq
    return A


def sample_prompts(
    batch: int, n: int, d: int, pool: torch.Tensor | None = None, seed=0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (batch, n + 1, d + 1), y_q (batch,)): noiseless linear-regression prompts. Each prompt's
    task is a uniform draw from `pool` (tasks, d), or a fresh w ~ N(0, I_d) when pool is None;
    the x's are always fresh. seed: an int or a torch.Generator (advanced in place)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (context length) must be an integer >= 1, got {n!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    g = _generator(seed)
    if pool is None:
        W = torch.randn(batch, d, generator=g)
    else:
        if pool.ndim != 2 or pool.shape[1] != d:
            raise ValueError(f"pool must have shape (tasks, {d}), got {tuple(pool.shape)}")
        W = pool[torch.randint(pool.shape[0], (batch,), generator=g)]
    X = torch.randn(batch, n + 1, d, generator=g)
    y = torch.einsum("bnd,bd->bn", X, W)
    return prompt_matrix(X[:, :n], y[:, :n], X[:, n]), y[:, n]


# ---- models ----------------------------------------------------------------------------------


def _split(A: torch.Tensor):
    if not isinstance(A, torch.Tensor) or A.ndim != 3 or A.shape[1] < 2 or A.shape[2] < 2:
        shape = tuple(A.shape) if isinstance(A, torch.Tensor) else type(A).__name__
        raise ValueError(f"A must be a prompt matrix (B, n + 1, d + 1), n, d >= 1; got {shape}")
    d = A.shape[2] - 1
    return A[:, -1:, :d], A[:, :-1, :d], A[:, :-1, :]


class KernelFeatureMap(nn.Module):
    """psi: the attention output of one simplified block at the query token, (B, n + 1, d + 1)
    -> (B, d + 1): sum_i k(x_q, x_i) (x_i, y_i) / N (values = whole tokens, i.e. identity
    value weights; keys and queries = the x parts: with the linear kernel this equals the score
    of whole tokens, the query's label slot being 0). No parameters. Its last entry is the
    kernel-smoother estimate of y_q; with the linear kernel and N = n it is
    x_q^T (X^T X / n) w, whose error on N(0, I) data is (d + 1) / n."""

    def __init__(self, kernel: str = "linear", bandwidth: float = 1.0, normalize=None):
        super().__init__()
        Z = torch.zeros(1, 1, 1)
        _check_smoother_args(Z, Z, Z, kernel, bandwidth, normalize, None, None)
        self.kernel, self.bandwidth, self.normalize = kernel, float(bandwidth), normalize

    def forward(self, A: torch.Tensor) -> torch.Tensor:
        xq, Xc, tokens = _split(A)
        out = batched_kernel_smoother(
            xq, Xc, tokens, self.kernel, self.bandwidth, normalize=self.normalize
        )
        return out[:, 0]

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, bandwidth={self.bandwidth}"


def mlp(d_in: int, width: int, depth: int, d_out: int = 1) -> nn.Sequential:
    """depth hidden ReLU layers of `width`, then a linear read-out."""
    layers, k = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(k, width), nn.ReLU()]
        k = width
    layers.append(nn.Linear(k, d_out))
    return nn.Sequential(*layers)


class PsiPredictor(nn.Module):
    """psi alone: y_hat = psi(A)[-1], the kernel smoother's estimate. No parameters."""

    def __init__(self, kernel: str = "linear", bandwidth: float = 1.0):
        super().__init__()
        self.psi = KernelFeatureMap(kernel, bandwidth)

    def forward(self, A):
        return self.psi(A)[:, -1]


class SimplifiedTransformer(nn.Module):
    """One block without key, query and value weights: h = A_q + psi(A) (attention with its
    residual, at the query token), out = h + MLP(h) (GPT-2's 4x-wide GELU MLP with its residual),
    y_hat = out[-1]. The MLP is the only trained part."""

    def __init__(self, d: int, width: int | None = None, kernel="linear", bandwidth=1.0):
        super().__init__()
        D = d + 1
        width = 4 * D if width is None else width
        self.psi = KernelFeatureMap(kernel, bandwidth)
        self.mlp = nn.Sequential(nn.Linear(D, width), nn.GELU(), nn.Linear(width, D))

    def forward(self, A):
        h = A[:, -1, :] + self.psi(A)
        return (h + self.mlp(h))[:, -1]


class PromptMLP(nn.Module):
    """y_hat = MLP(vec(A)): the vectorized prompt, (n + 1)(d + 1) inputs."""

    def __init__(self, n: int, d: int, width: int = 256, depth: int = 2):
        super().__init__()
        self.n, self.d = n, d
        self.net = mlp((n + 1) * (d + 1), width, depth)

    def forward(self, A):
        return self.net(A.flatten(1))[:, 0]


class PsiPromptMLP(nn.Module):
    """y_hat = MLP([psi(A), vec(A)]): the feature map's (d + 1) outputs next to the vectorized
    prompt."""

    def __init__(self, n: int, d: int, width: int = 256, depth: int = 2, kernel="linear", bw=1.0):
        super().__init__()
        self.n, self.d = n, d
        self.psi = KernelFeatureMap(kernel, bw)
        self.net = mlp((d + 1) + (n + 1) * (d + 1), width, depth)

    def forward(self, A):
        return self.net(torch.cat([self.psi(A), A.flatten(1)], 1))[:, 0]


MODELS = ("psi", "mlp", "psi+mlp", "sgpt")


def make_model(kind: str, n: int, d: int, width: int = 256, depth: int = 2, seed: int = 0):
    """A model by name (MODELS), its weights drawn from `seed`."""
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")
    torch.manual_seed(seed)
    if kind == "psi":
        return PsiPredictor()
    if kind == "mlp":
        return PromptMLP(n, d, width, depth)
    if kind == "psi+mlp":
        return PsiPromptMLP(n, d, width, depth)
    return SimplifiedTransformer(d)


# ---- training and evaluation -----------------------------------------------------------------


@dataclass
class TrainResult:
    model: nn.Module
    losses: list = field(default_factory=list)
    seconds: float = 0.0


def train(
    model: nn.Module,
    pool: torch.Tensor,
    n: int,
    *,
    steps: int = 1000,
    batch: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    single_thread: bool = True,
) -> TrainResult:
    """Adam on the squared error of y_q over prompts whose tasks are drawn from `pool` (fresh
    x's every step), `steps` steps of `batch` prompts, lr cosine-decayed to 0; seeded (data
    and batch order). A model without parameters (psi alone) is returned as it is.

    single_thread: run torch's ops on one thread meanwhile (rfmfast._threads.torch_single_thread):
    on a shared 2-core machine, two threads ran a step of the default MLP about 10x slower."""
    t0 = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    res = TrainResult(model)
    if not params or steps == 0:
        return res
    d = pool.shape[1]
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    model.train()
    with torch_single_thread() if single_thread else nullcontext():
        for _ in range(steps):
            A, yq = sample_prompts(batch, n, d, pool, g)
            loss = torch.mean((model(A) - yq) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            res.losses.append(loss.item())
    model.eval()
    res.seconds = time.perf_counter() - t0
    return res


@torch.no_grad()
def evaluate(model: nn.Module, n: int, d: int, *, prompts: int = 20_000, seed: int = 12345):
    """MSE / d of y_q on `prompts` prompts with fresh tasks (w ~ N(0, I_d), none from any pool)."""
    A, yq = sample_prompts(prompts, n, d, None, seed)
    model.eval()
    return float(torch.mean((model(A) - yq) ** 2)) / d


#: the training settings of the CI-size reproduction (tests/test_icl.py, `rfmfast icl`)
CI_SETTINGS = {"width": 128, "depth": 2, "batch": 1024, "lr": 3e-3, "steps": 800}


def fit_and_evaluate(kind, n, d, tasks, *, seed=0, prompts=20_000, **settings):
    """Train model `kind` on a pool of `tasks` tasks (seeded) at context length n and return
    (error on fresh tasks, training seconds). settings: CI_SETTINGS' keys. The test prompts
    depend on (n, d, seed) only, so models compared at one point see the same prompts."""
    unknown = set(settings) - set(CI_SETTINGS)
    if unknown:
        raise TypeError(f"unknown settings {sorted(unknown)}; known: {sorted(CI_SETTINGS)}")
    cfg = {**CI_SETTINGS, **settings}
    model = make_model(kind, n, d, cfg["width"], cfg["depth"], seed)
    pool = task_pool(tasks, d, seed=10_000 + seed)
    res = train(model, pool, n, steps=cfg["steps"], batch=cfg["batch"], lr=cfg["lr"], seed=seed)
    return evaluate(model, n, d, prompts=prompts, seed=777 + seed), res.seconds


def scaling_errors(points, *, d: int = 5, seed: int = 0, progress=None, **settings) -> dict:
    """{(kind, n, tasks): error} for points (kind, n, tasks): each trained model fit once (psi
    alone is evaluated without training: its error does not depend on tasks). progress: called
    with (kind, n, tasks, error, seconds) after each point."""
    out = {}
    for kind, n, tasks in points:
        if (kind, n, tasks) in out:
            continue
        err, sec = fit_and_evaluate(kind, n, d, tasks, seed=seed, **settings)
        out[(kind, n, tasks)] = err
        if progress is not None:
            progress(kind, n, tasks, err, sec)
    return out
