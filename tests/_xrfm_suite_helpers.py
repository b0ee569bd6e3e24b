"""Routes every kernel xRFM builds from a name through RfmfastKernel, to run xRFM's own tests.

xRFM turns ``kernel="l2"`` (and its other names) into a kernel object in
``RFM.kernel_from_str``; ``route_kernels`` replaces that method, so each RFM, and each leaf of an
xRFM tree, computes with rfmfast's ops. Used as a pytest plugin over a checkout of xRFM's
tests (never copied here), with this folder on PYTHONPATH:

    PYTHONPATH=tests python -m pytest -p _xrfm_suite_helpers /path/to/xRFM/tests

(tests/test_xrfm_suite.py does this when RFMFAST_XRFM_TESTS names that folder), or from a
conftest beside it: ``from _xrfm_suite_helpers import route_kernels_fixture`` (autouse).

Names rfmfast computes: the Euclidean Laplace kernel ("laplace", "l2", "l2_high_dim",
"l2_light"; "lpq" with p = 2) and the l1 one ("l1", "product_laplace", "l1_legacy", "lpq" with
p = 1), exponent 1 only. Any other name or setting raises NotImplementedError (or the plug-in's
own ValueError for an exponent), so a test that needs it fails and says why.
"""

from __future__ import annotations

import pytest

from rfmfast.xrfm_plugin import RfmfastKernel

L2_NAMES = {"laplace", "l2", "l2_high_dim", "l2_light"}
L1_NAMES = {"l1", "l1_legacy", "product_laplace", "kermac_product_laplace", "l1_kermac"}
LPQ_NAMES = {"lpq", "lpq_legacy", "kermac_lpq_laplace", "lpq_kermac"}


def rfmfast_kernel_for(
    name: str, bandwidth: float, exponent: float, norm_p: float | None = None
) -> RfmfastKernel:
    """The RfmfastKernel computing xRFM's kernel ``name``; NotImplementedError if none does."""
    if name in LPQ_NAMES:
        p = 2.0 if norm_p is None else float(norm_p)
        if p not in (1.0, 2.0):
            raise NotImplementedError(
                f"rfmfast has no L^p Laplace kernel for p = {p} "
                "(only p = 2, 'laplace', and p = 1, 'l1_laplace')"
            )
        name = "l2" if p == 2.0 else "l1"
    if name in L2_NAMES:
        return RfmfastKernel("laplace", bandwidth, exponent=exponent)
    if name in L1_NAMES:
        return RfmfastKernel("l1_laplace", bandwidth, exponent=exponent)
    raise NotImplementedError(f"rfmfast has no counterpart of xRFM's kernel {name!r}")


def route_kernels(monkeypatch) -> None:
    """Make xRFM's RFM build an RfmfastKernel for every kernel name (for this test only)."""
    from xrfm.rfm_src.recursive_feature_machine import RFM

    def kernel_from_str(
        self, kernel_str, bandwidth, exponent, norm_p=2.0, device=None, **kernel_kwargs
    ):
        return rfmfast_kernel_for(kernel_str, bandwidth, exponent, norm_p)

    monkeypatch.setattr(RFM, "kernel_from_str", kernel_from_str)


@pytest.fixture(autouse=True)
def route_kernels_fixture(monkeypatch):
    route_kernels(monkeypatch)
    yield
