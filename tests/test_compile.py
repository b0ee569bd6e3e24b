"""torch.compile(fullgraph=True) and torch.export of code that calls the public ops on CPU
tensors: no graph break (the data-dependent validation is skipped while tracing, the backend
choice is static, the custom ops have fakes and backward formulas). Few tests: each compile
costs seconds."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import rfmfast

from ._cases import needs

pytestmark = needs("cpu")

F64 = torch.float64


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(11, 3, generator=g, dtype=F64)
    Z = torch.randn(7, 3, generator=g, dtype=F64)
    V = torch.randn(7, 2, generator=g, dtype=F64)
    B = torch.randn(3, 3, generator=g, dtype=F64)
    return X, Z, V, B


def f(X, Z, V, B):
    """Both ops, with a full M built from B and a diagonal one, Z given and Z = X."""
    M = B @ B.T / 3 + 0.5 * torch.eye(3, dtype=B.dtype)
    S = rfmfast.kernel_matmul(X, Z, V, M=M, bandwidth=2.0)
    K = rfmfast.kernel_matrix(X, kernel="gaussian", M=M.diagonal(), bandwidth=1.5)
    T = rfmfast.kernel_matmul(X, Z, V[:, 0], kernel="l1_laplace", bandwidth=3.0)
    return S.square().sum() + (K @ X).sum() + T.sum()


def _grads(fn, args):
    leaves = [a.detach().clone().requires_grad_() for a in args]
    out = fn(*leaves)
    return out, torch.autograd.grad(out, leaves)


def test_fullgraph_compile_forward_and_backward():
    torch._dynamo.reset()
    args = _inputs()
    explained = torch._dynamo.explain(f)(*args)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, [
        b.reason for b in explained.break_reasons
    ]
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out, grads = _grads(compiled, args)
    want, want_grads = _grads(f, args)
    assert torch.allclose(out, want, rtol=1e-13, atol=0)
    for g, w in zip(grads, want_grads):
        assert torch.allclose(g, w, rtol=1e-12, atol=1e-14)


def test_compiled_call_still_checks_shapes_at_trace_time():
    """The checks that read no data stay: a mismatch of d fails while tracing."""
    torch._dynamo.reset()
    X, Z, V, _ = _inputs()
    compiled = torch.compile(
        lambda X, Z, V: rfmfast.kernel_matmul(X, Z, V), fullgraph=True, backend="eager"
    )
    with pytest.raises(Exception, match="X has d = 3 features but Z has d = 2"):
        compiled(X, Z[:, :2], V)


class _Predictor(torch.nn.Module):
    """A kernel predictor with learnable centers and weights, and a fixed diagonal M."""

    def __init__(self):
        super().__init__()
        _, Z, V, _ = _inputs(1)
        self.Z = torch.nn.Parameter(Z)
        self.V = torch.nn.Parameter(V)
        self.register_buffer("M", torch.tensor([0.5, 1.0, 2.0], dtype=F64))

    def forward(self, X):
        K = rfmfast.kernel_matrix(X, self.Z, M=self.M, bandwidth=3.0)
        return (
            rfmfast.kernel_matmul(X, self.Z, self.V, kernel="gaussian", bandwidth=2.0) + K @ self.V
        )


def test_export_with_a_dynamic_batch():
    model = _Predictor()
    X = _inputs(2)[0]
    ep = torch.export.export(model, (X,), dynamic_shapes={"X": {0: torch.export.Dim("n", min=2)}})
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"rfmfast.kernel_matrix_cpu.default", "rfmfast.kernel_matmul_cpu.default"} <= targets
    with torch.no_grad():
        for n in (4, 19):
            Xn = torch.randn(n, 3, dtype=F64)
            assert torch.allclose(ep.module()(Xn), model(Xn), rtol=1e-13, atol=0)


def test_fresh_process_first_call_compiled(tmp_path):
    """The first call of a fresh process compiled with fullgraph=True: the backend modules are
    imported while tracing (rfmfast.backends.impl), the backend probe traced; the same values
    and gradients as eager."""
    code = textwrap.dedent("""
        import torch, rfmfast
        g = torch.Generator().manual_seed(0)
        X = torch.randn(9, 3, generator=g, dtype=torch.float64, requires_grad=True)
        V = torch.randn(9, 2, generator=g, dtype=torch.float64)

        def f(X, V):
            return rfmfast.kernel_matmul(X * 2, X, V).sum() + rfmfast.kernel_matrix(X).sum()

        out = torch.compile(f, fullgraph=True, backend="aot_eager")(X, V)
        (g1,) = torch.autograd.grad(out, X)
        want = f(X, V)
        (g2,) = torch.autograd.grad(want, X)
        assert torch.allclose(out, want, rtol=1e-12), (out, want)
        assert torch.allclose(g1, g2, rtol=1e-10, atol=1e-13), (g1, g2)
        print("ok")
    """)
    # from an empty folder: the installed package (a source tree without the built extension
    # would test the reference backend instead; both must compile)
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-4000:]


def test_inductor_fullgraph():
    """inductor (C++ code for the torch ops around the custom ops) with fullgraph=True."""
    torch._dynamo.reset()
    X, Z, V, _ = _inputs(3)

    def g(X, Z, V):
        return rfmfast.kernel_matmul(X, Z, V * 2, kernel="gaussian").sum(1)

    out = torch.compile(g, fullgraph=True)(X, Z, V)
    assert torch.allclose(out, g(X, Z, V), rtol=1e-13, atol=0)
