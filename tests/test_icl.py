"""rfmfast.nn.icl: the batched kernel smoother against a float64 loop reference (ragged shapes,
masks, data far from the origin, near-duplicates, chunking, gradients, bad input), the data and
the models' shapes, and the context- versus task-scaling reproduction at CI size (docs/icl.md)."""

from __future__ import annotations

import math

import pytest
import torch

from rfmfast.nn import icl

KERNELS = tuple(icl.KERNELS)


# ---- the float64 loop reference --------------------------------------------------------------


def reference(Xq, Xc, Yc, kernel, bandwidth, normalize=None, mask=None):
    """Loop over prompts and queries; weights from explicit coordinate differences, float64."""
    Xq, Xc, Yc = (T.detach().to(torch.float64) for T in (Xq, Xc, Yc))
    normalize = icl.KERNELS[kernel] if normalize is None else normalize
    B, q, _ = Xq.shape
    out = torch.zeros(B, q, Yc.shape[2], dtype=torch.float64)
    L = float(bandwidth)
    for b in range(B):
        keep = slice(None) if mask is None else mask[b]
        C, Y = Xc[b][keep], Yc[b][keep]
        for j in range(q):
            x = Xq[b, j]
            if kernel == "linear":
                w = (C * x).sum(1) / L**2
            elif kernel == "exp":
                s = (C * x).sum(1) / L
                w = torch.exp(s - s.max()) if normalize == "sum" else torch.exp(s)
            else:
                dist2 = ((C - x) ** 2).sum(1)
                s = -dist2 / (2 * L * L) if kernel == "gaussian" else -dist2.sqrt() / L
                w = torch.exp(s - s.max()) if normalize == "sum" else torch.exp(s)
            den = w.sum() if normalize == "sum" else C.shape[0]
            out[b, j] = (w[:, None] * Y).sum(0) / den
    return out


def rel_err(out, ref):
    assert torch.isfinite(out).all()
    return float((out.to(torch.float64) - ref).abs().max() / ref.abs().max().clamp(min=1e-300))


TOL = {torch.float32: 2e-5, torch.float64: 1e-12}
#: (B, q, n, d, c): one of everything, odd sizes, a chunk boundary that does not divide B
SHAPES = [(1, 1, 1, 1, 1), (3, 2, 7, 3, 1), (13, 5, 17, 4, 3), (33, 1, 50, 5, 6)]


def inputs(B, q, n, d, c, dtype=torch.float64, seed=0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    Xq = torch.randn(B, q, d, generator=g, dtype=torch.float64) + offset
    Xc = torch.randn(B, n, d, generator=g, dtype=torch.float64) + offset
    Yc = torch.randn(B, n, c, generator=g, dtype=torch.float64)
    return Xq.to(dtype), Xc.to(dtype), Yc.to(dtype)


def bw_for(kernel, d):
    return {"linear": 1.0, "exp": 2.0 * math.sqrt(d), "gaussian": 1.5, "laplace": 2.0}[kernel]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kernel", KERNELS)
def test_smoother_matches_loop_reference(kernel, shape, dtype):
    Xq, Xc, Yc = inputs(*shape, dtype=dtype)
    bw = bw_for(kernel, shape[3])
    normalizers = ("count",) if kernel == "linear" else ("count", "sum")
    for normalize in normalizers:
        out = icl.batched_kernel_smoother(Xq, Xc, Yc, kernel, bw, normalize=normalize, chunk=4)
        assert out.shape == (shape[0], shape[1], shape[4]) and out.dtype == dtype
        ref = reference(Xq, Xc, Yc, kernel, bw, normalize)
        assert rel_err(out, ref) < TOL[dtype], (kernel, normalize)


@pytest.mark.parametrize("kernel", KERNELS)
def test_ragged_prompts_by_mask(kernel):
    """Prompts of different lengths padded to one n: the same as each prompt alone."""
    B, q, n, d, c = 9, 3, 12, 4, 2
    Xq, Xc, Yc = inputs(B, q, n, d, c, seed=1)
    lengths = torch.tensor([1, 12, 5, 7, 2, 11, 3, 12, 9])
    mask = torch.arange(n)[None, :] < lengths[:, None]
    Xc = torch.where(mask[:, :, None], Xc, torch.full_like(Xc, 1e3))  # padding is never read
    bw = bw_for(kernel, d)
    out = icl.batched_kernel_smoother(Xq, Xc, Yc, kernel, bw, mask=mask, chunk=2)
    assert rel_err(out, reference(Xq, Xc, Yc, kernel, bw, mask=mask)) < 1e-12
    for b in range(B):
        k = int(lengths[b])
        alone = icl.batched_kernel_smoother(
            Xq[b : b + 1], Xc[b : b + 1, :k], Yc[b : b + 1, :k], kernel, bw
        )
        assert torch.allclose(out[b : b + 1], alone, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("offset", [1e3, 1e4])
@pytest.mark.parametrize("kernel", ["gaussian", "laplace"])
def test_far_from_origin(kernel, offset):
    """Distances of float32 data near 1e4 (spread 1): |x|^2 + |z|^2 - 2 x.z would lose every
    digit; the translation to the context's mean keeps them."""
    Xq, Xc, Yc = inputs(6, 4, 30, 5, 2, dtype=torch.float32, seed=2, offset=offset)
    bw = 1.5
    ref = reference(Xq, Xc, Yc, kernel, bw)  # float64 on the same float32 values
    out = icl.batched_kernel_smoother(Xq, Xc, Yc, kernel, bw)
    assert rel_err(out, ref) < 1e-5
    out64 = icl.batched_kernel_smoother(*(T.double() for T in (Xq, Xc, Yc)), kernel, bw)
    assert rel_err(out64, ref) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel", ["gaussian", "laplace"])
def test_near_duplicates(kernel, dtype):
    """Context points within 1e-4 of the queries, bandwidth of that size: the weights are set by
    distances the GEMM form cannot resolve; the exact recompute gives them."""
    g = torch.Generator().manual_seed(3)
    B, q, n, d = 5, 3, 8, 6
    Xq = torch.randn(B, q, d, generator=g, dtype=torch.float64) * 3
    Xc = Xq[:, torch.arange(n) % q] + 1e-4 * torch.randn(B, n, d, generator=g, dtype=torch.float64)
    Yc = torch.randn(B, n, 2, generator=g, dtype=torch.float64)
    Xq, Xc, Yc = Xq.to(dtype), Xc.to(dtype), Yc.to(dtype)
    bw = 1e-4
    ref = reference(Xq, Xc, Yc, kernel, bw)
    out = icl.batched_kernel_smoother(Xq, Xc, Yc, kernel, bw)
    assert rel_err(out, ref) < (1e-5 if dtype == torch.float32 else 1e-12)


def test_exp_kernel_stable_and_softmax():
    """exp with "sum" is softmax attention: no overflow at large scores."""
    Xq, Xc, Yc = inputs(4, 2, 9, 3, 2, seed=4)
    out = icl.batched_kernel_smoother(Xq * 40, Xc * 40, Yc, "exp", 1.0)
    soft = torch.softmax(torch.bmm(Xq * 40, (Xc * 40).transpose(1, 2)), -1) @ Yc
    assert torch.allclose(out, soft, rtol=1e-10, atol=1e-12)


def test_far_query_sum_normalized_no_nan():
    """Every Gaussian weight underflows (query 1e3 bandwidths away): the row-max shift gives the
    nearest point's value, not 0/0."""
    Xc = torch.tensor([[[0.0], [1.0]]], dtype=torch.float64)
    Yc = torch.tensor([[[2.0], [5.0]]], dtype=torch.float64)
    out = icl.batched_kernel_smoother(
        torch.tensor([[[1e3]]], dtype=torch.float64), Xc, Yc, "gaussian", 1.0
    )
    assert out.item() == 5.0


def test_chunking_invariant_and_bounded(monkeypatch):
    Xq, Xc, Yc = inputs(50, 3, 11, 4, 2, seed=5)
    full = icl.batched_kernel_smoother(Xq, Xc, Yc, "gaussian", 1.0, chunk=50)
    for chunk in (1, 7, None):
        out = icl.batched_kernel_smoother(Xq, Xc, Yc, "gaussian", 1.0, chunk=chunk)
        assert torch.allclose(out, full, rtol=1e-13, atol=1e-15)
    # the default chunk keeps a chunk's kernel block near CHUNK_ELEMENTS
    sizes = []
    real = icl._smooth_chunk
    monkeypatch.setattr(icl, "CHUNK_ELEMENTS", 3 * 11 * 8)
    monkeypatch.setattr(
        icl, "_smooth_chunk", lambda Xq, *a: sizes.append(Xq.shape[0]) or real(Xq, *a)
    )
    out = icl.batched_kernel_smoother(Xq, Xc, Yc, "gaussian", 1.0)
    assert max(sizes) == 8 and sum(sizes) == 50
    assert torch.allclose(out, full, rtol=1e-13, atol=1e-15)


def test_empty_shapes():
    Xq, Xc, Yc = inputs(0, 2, 3, 4, 2)
    assert icl.batched_kernel_smoother(Xq, Xc, Yc).shape == (0, 2, 2)
    Xq, Xc, Yc = inputs(3, 0, 3, 4, 2)
    assert icl.batched_kernel_smoother(Xq, Xc, Yc, "laplace").shape == (3, 0, 2)


@pytest.mark.parametrize("kernel", KERNELS)
def test_gradients(kernel):
    Xq, Xc, Yc = (T.requires_grad_() for T in inputs(2, 2, 4, 3, 2, seed=6))
    f = lambda a, b, c: icl.batched_kernel_smoother(a, b, c, kernel, bw_for(kernel, 3))
    assert torch.autograd.gradcheck(f, (Xq, Xc, Yc))


def test_bad_input():
    Xq, Xc, Yc = inputs(2, 1, 3, 4, 1)
    smooth = icl.batched_kernel_smoother
    bad = [
        ((Xq[0], Xc, Yc), {}, ValueError, "3-D"),
        ((Xq, Xc[:1], Yc), {}, ValueError, "batch sizes"),
        ((Xq, Xc[..., :3], Yc), {}, ValueError, "columns"),
        ((Xq, Xc, Yc[:, :2]), {}, ValueError, "context rows"),
        ((Xq, Xc[:, :0], Yc[:, :0]), {}, ValueError, "at least one context"),
        ((Xq.long(), Xc, Yc), {}, TypeError, "floating-point"),
        ((Xq.float(), Xc, Yc), {}, TypeError, "share a dtype"),
        ((Xq.numpy(), Xc, Yc), {}, TypeError, "torch.Tensor"),
        ((Xq, Xc, Yc), {"kernel": "cosine"}, ValueError, "unknown kernel"),
        ((Xq, Xc, Yc), {"bandwidth": 0.0}, ValueError, "positive"),
        ((Xq, Xc, Yc), {"bandwidth": float("nan")}, ValueError, "positive"),
        ((Xq, Xc, Yc), {"bandwidth": "1"}, TypeError, "positive number"),
        ((Xq, Xc, Yc), {"bandwidth": True}, TypeError, "positive number"),
        ((Xq, Xc, Yc), {"normalize": "max"}, ValueError, "normalize"),
        ((Xq, Xc, Yc), {"normalize": "sum"}, ValueError, "linear kernel"),
        ((Xq, Xc, Yc), {"mask": torch.ones(2, 3)}, TypeError, "bool"),
        ((Xq, Xc, Yc), {"mask": torch.ones(2, 4, dtype=torch.bool)}, ValueError, "shape"),
        (
            (Xq, Xc, Yc),
            {"mask": torch.tensor([[1, 1, 0], [0, 0, 0]]).bool()},
            ValueError,
            "unmasked",
        ),
        ((Xq, Xc, Yc), {"chunk": 0}, ValueError, "chunk"),
        ((Xq, Xc * float("inf"), Yc), {}, ValueError, "non-finite"),
    ]
    for args, kw, exc, match in bad:
        with pytest.raises(exc, match=match):
            smooth(*args, **kw)


# ---- data, psi and the models -----------------------------------------------------------------


def test_prompts_layout_and_tasks():
    pool = icl.task_pool(3, 5, seed=1)
    A, yq = icl.sample_prompts(64, 7, 5, pool, seed=2)
    assert A.shape == (64, 8, 6) and yq.shape == (64,)
    assert torch.all(A[:, -1, -1] == 0)  # the query's label slot
    # every prompt is noiseless and its task is one of the pool's
    X, y = A[:, :-1, :5].double(), A[:, :-1, 5].double()
    W = torch.linalg.lstsq(X, y[..., None]).solution[..., 0]
    assert torch.allclose((A[:, -1, :5].double() * W).sum(1), yq.double(), atol=1e-4)
    assert torch.cdist(W, pool.double()).min(1).values.max() < 1e-4
    A2, _ = icl.sample_prompts(64, 7, 5, pool, seed=2)
    assert torch.equal(A, A2)  # seeded
    Af, yf = icl.sample_prompts(64, 7, 5, None, seed=2)  # fresh tasks: not from any pool
    Wf = torch.linalg.lstsq(Af[:, :-1, :5].double(), Af[:, :-1, 5:].double()).solution[..., 0]
    assert torch.cdist(Wf, pool.double()).min(1).values.min() > 1e-2
    for bad in (dict(n=0), dict(batch=0), dict(pool=torch.zeros(3, 4))):
        kw = {"batch": 4, "n": 3, "d": 5, "pool": pool, **bad}
        with pytest.raises(ValueError):
            icl.sample_prompts(**kw)
    with pytest.raises(ValueError, match="tasks"):
        icl.task_pool(0, 5)


def test_psi_is_the_kernel_smoother():
    A, _ = icl.sample_prompts(10, 6, 3, None, seed=3)
    psi = icl.KernelFeatureMap()(A)
    X, y, xq = A[:, :-1, :3], A[:, :-1, 3], A[:, -1, :3]
    weights = torch.einsum("bd,bnd->bn", xq, X) / 6
    assert torch.allclose(psi[:, -1], (weights * y).sum(1), atol=1e-5)  # the estimate of y_q
    assert torch.allclose(psi[:, :3], torch.einsum("bn,bnd->bd", weights, X), atol=1e-5)
    assert list(icl.KernelFeatureMap().parameters()) == []
    with pytest.raises(ValueError, match="prompt matrix"):
        icl.KernelFeatureMap()(A[:, :1])
    with pytest.raises(ValueError, match="unknown kernel"):
        icl.KernelFeatureMap("cosine")


@pytest.mark.parametrize("n", [10, 40])
def test_psi_context_scales(n):
    """psi alone: error (d + 1) / n on fresh tasks (0.60 at n = 10, 0.15 at n = 40); it has no
    parameters, so training on any pool leaves it, and its error, unchanged (no task-scaling)."""
    d = 5
    psi = icl.PsiPredictor()
    err = icl.evaluate(psi, n, d, prompts=40_000, seed=n)
    assert abs(err / ((d + 1) / n) - 1) < 0.06, err
    res = icl.train(psi, icl.task_pool(4096, d), n, steps=10)
    assert res.losses == [] and icl.evaluate(psi, n, d, prompts=40_000, seed=n) == err


@pytest.mark.parametrize("kind", icl.MODELS)
def test_model_shapes(kind):
    A, _ = icl.sample_prompts(7, 4, 3, None, seed=0)
    out = icl.make_model(kind, 4, 3, width=16)(A)
    assert out.shape == (7,)
    with pytest.raises(ValueError, match="unknown model"):
        icl.make_model("gpt2", 4, 3)
    with pytest.raises(TypeError, match="unknown settings"):
        icl.fit_and_evaluate("mlp", 4, 3, 2, widht=3)


def test_training_is_seeded():
    a = icl.fit_and_evaluate("mlp", 5, 3, 4, steps=20, width=16, batch=32, seed=1)[0]
    b = icl.fit_and_evaluate("mlp", 5, 3, 4, steps=20, width=16, batch=32, seed=1)[0]
    assert a == b


def test_one_block_simplified_transformer_learns():
    """One SGPT block (psi, then GPT-2's MLP with residuals) trains below psi alone: its MLP
    learns at least the shrinkage of the kernel smoother's estimate."""
    n, d = 10, 5
    err, _ = icl.fit_and_evaluate("sgpt", n, d, 4096, steps=300, batch=256)
    psi = icl.evaluate(icl.PsiPredictor(), n, d, prompts=20_000, seed=777)
    assert err < 0.85 * psi, (err, psi)


# ---- the reproduction at CI size ---------------------------------------------------------------

D = 5
SMALL, LARGE = 8, 4096  # training tasks
N0, N1 = 10, 20  # context lengths
POINTS = [
    (kind, n, t)
    for kind in ("mlp", "psi+mlp")
    for (n, t) in ((N0, SMALL), (N0, LARGE), (N1, LARGE))
] + [("psi", n, LARGE) for n in (N0, N1)]


@pytest.fixture(scope="module")
def errors():
    return icl.scaling_errors(POINTS, d=D, seed=0)


def test_mlp_on_prompt_task_scales_not_context_scales(errors):
    e = lambda n, t: errors[("mlp", n, t)]
    assert e(N0, LARGE) < 0.85 * e(N0, SMALL), errors  # task-scaling
    assert e(N1, LARGE) > e(N0, LARGE), errors  # no context-scaling: longer prompts hurt


def test_psi_prompt_mlp_does_both(errors):
    e = lambda n, t: errors[("psi+mlp", n, t)]
    assert e(N0, LARGE) < 0.95 * e(N0, SMALL), errors  # task-scaling
    assert e(N1, LARGE) < 0.8 * e(N0, LARGE), errors  # context-scaling


def test_psi_prompt_mlp_best_everywhere(errors):
    psi = {n: errors[("psi", n, LARGE)] for n in (N0, N1)}
    for n, t in ((N0, SMALL), (N0, LARGE), (N1, LARGE)):
        both = errors[("psi+mlp", n, t)]
        assert both < psi[n] and both < errors[("mlp", n, t)], (n, t, errors)


# ---- the recipe --------------------------------------------------------------------------------


def test_recipe_smoke(tmp_path, capsys):
    import argparse

    pytest.importorskip("matplotlib")
    from rfmfast.recipes import icl as recipe

    parser = argparse.ArgumentParser()
    recipe.register(parser.add_subparsers())
    out = tmp_path / "icl.png"
    argv = ["icl", "--models", "psi,mlp,psi+mlp,sgpt", "--context", "3,6", "--tasks", "2,4"]
    argv += ["--tasks-fixed", "4", "--n-fixed", "3", "--steps", "3", "--width", "8"]
    argv += ["--batch", "16", "--out", str(out)]
    args = parser.parse_args(argv)
    assert args.func(args) == 0 and out.stat().st_size > 0
    text = capsys.readouterr().out
    assert "error against context length n" in text and "1-block SGPT" in text
    for bad in (["--context", "0,3"], ["--tasks", "x"], ["--models", "gpt2"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["icl", *bad])
