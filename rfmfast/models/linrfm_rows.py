"""The row step of lin-RFM completion, batched: for every row ``i`` with observed columns ``O_i``

    a_i = (P[O_i, O_i] + lam I)^{-1} y_{i, O_i}         (one Cholesky per row, rows batched)
    x_i = a_i^T P[O_i, :]  with  x_i[O_i] = y_{i, O_i}   (all rows at once: sparse C (n, d) @ P)

Rows are grouped into buckets of similar observed count; a bucket pads its rows to its largest
count ``K`` (a padded slot solves ``1 * a = 0``, so its coefficient is exactly 0) and is cut into
chunks of at most ``block_elems`` entries of (b, K, K). The completed rows come out in row chunks
of at most ``block_elems`` entries of (rows, d), so the Gram matrix never needs all of X at once.

Memory: O(nnz) for the index/value tensors (padding adds at most ``pad_ratio - 1`` of nnz; rows
of 128 or more entries a third of that), plus one
(b, K, K) block (and its int64 flat indices) and one (rows, d) chunk at a time: 2 * block_elems.
Works on any device: only gathers, batched Cholesky, triangular solves and a sparse-dense product.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import numpy as np
import torch

from .._threads import torch_kernel_threads, torch_single_thread

THREADED_K = 512  # row systems this large are factored on torch's threads, smaller on one


class RowSystems:
    """Observed entries (sorted by row, then column) of an (n, d) matrix, grouped for batched
    solves.

    rows, cols: int64 numpy (nnz,) sorted by (row, col); vals: float numpy (nnz,).
    """

    def __init__(
        self,
        rows,
        cols,
        vals,
        shape,
        *,
        device,
        dtype,
        block_elems: int = 2**24,
        pad_ratio: float = 1.15,
    ):
        self.n, self.d = shape
        self.nnz = len(rows)
        self.device, self.dtype = device, dtype
        self.block_elems = int(block_elems)
        counts = np.bincount(rows, minlength=self.n)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        self.indptr = torch.as_tensor(indptr, device=device)
        self.cols = torch.as_tensor(cols, device=device)
        self.vals = torch.as_tensor(vals, dtype=dtype, device=device)
        self.rows = torch.as_tensor(rows, device=device)
        # per chunk: idx (b, K) columns (padding -> d, a zero row/column of the padded P),
        # validf (b, K) 1.0 on real slots, dst (n_valid,) entry positions, y (b, K), and the
        # flat indices into the padded P (b, K, K) when all of them fit in block_elems entries
        self.chunks = []
        order = np.argsort(counts, kind="stable")
        order = order[counts[order] > 0]
        sorted_counts = counts[order]
        cached = 0
        i = 0
        while i < len(order):
            lo = int(sorted_counts[i])
            # long rows pad less: their factorizations are most of the work (K^3), and one
            # more block costs nothing next to them
            ratio = pad_ratio if lo < 128 else 1.0 + (pad_ratio - 1.0) / 3.0
            hi = max(lo + 2, int(lo * ratio))
            j = int(np.searchsorted(sorted_counts, hi, side="right"))
            K = int(sorted_counts[j - 1])
            per_chunk = max(1, self.block_elems // (K * K))
            for s in range(i, j, per_chunk):
                ids = order[s : min(j, s + per_chunk)]
                ar = np.arange(K)
                valid = ar[None, :] < counts[ids][:, None]
                pos = np.where(valid, indptr[ids][:, None] + ar[None, :], 0)
                idx = np.where(valid, cols[pos], self.d)
                ch = {
                    "idx": torch.as_tensor(idx, device=device),
                    "validf": torch.as_tensor(valid, dtype=dtype, device=device),
                    "valid": torch.as_tensor(valid, device=device),
                    "dst": torch.as_tensor(pos[valid], device=device),
                    "y": torch.as_tensor(
                        np.where(valid, vals[pos], 0.0), dtype=dtype, device=device
                    ),
                    "flat": None,
                }
                ch["work"] = float(len(ids)) * K**3
                cached += len(ids) * K * K
                self.chunks.append(ch)
            i = j
        self.solve_work = sum(ch["work"] for ch in self.chunks)
        if cached <= self.block_elems:
            for ch in self.chunks:
                ch["flat"] = self._flat(ch["idx"])
        self.row_chunk = max(1, self.block_elems // max(self.d, 1))

    def _flat(self, idx):
        return idx[:, :, None] * (self.d + 1) + idx[:, None, :]

    # ---- the row solves ----------------------------------------------------------------------
    def solve(self, P, lam: float, progress=None, dtype=None) -> torch.Tensor:
        """Coefficients ``a`` (nnz,) in the sorted entry order for the weight matrix P (d, d),
        in P's dtype (which may be lower than the values'). ``P=None`` is the identity: then
        every system is diagonal and ``a = y / (1 + lam)`` (``dtype`` gives the result's).
        ``progress(phase, fraction)``, when given, is called before each block."""
        if P is None:
            return (self.vals / (1.0 + lam)).to(dtype or self.dtype)
        if P.device.type == "cpu":
            # many small factorizations and gathers: on 2 cores one thread does them faster
            # (0.9 s against 1.15 s for a MovieLens-100K fit) and 4x faster next to a busy
            # process, where torch's OpenMP threads spin; the large ones get the threads back
            with torch_single_thread():
                return self._solve(P, lam, progress)
        return self._solve(P, lam, progress)

    def _solve(self, P, lam: float, progress) -> torch.Tensor:
        coef = torch.zeros(self.nnz, dtype=P.dtype, device=self.device)
        d = self.d
        Pp = torch.zeros(d + 1, d + 1, dtype=P.dtype, device=P.device)  # P with a zero row/column
        Pp[:d, :d] = P
        done, total = 0.0, self.solve_work or 1.0
        for ch in self.chunks:
            if progress is not None:  # by the work of the blocks (K^3 each row), not their count
                progress("row solves", done / total)
            done += ch["work"]
            flat = ch["flat"] if ch["flat"] is not None else self._flat(ch["idx"])
            S = torch.take(Pp, flat)  # (b, K, K) = P[O_i, O_i]
            # systems of 512 and more: large factorizations that threads do speed up
            big = S.shape[-1] >= THREADED_K and S.device.type == "cpu"
            with torch_kernel_threads() if big else nullcontext():
                a = _cholesky_solve_batched(S, ch["validf"].to(S.dtype), ch["y"].to(S.dtype), lam)
            coef[ch["dst"]] = a[ch["valid"]]
        return coef

    # ---- completed rows ----------------------------------------------------------------------
    def csr(self, coef: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        """Sparse CSR (r1 - r0, d) holding the coefficients of rows r0..r1-1 at their observed
        columns."""
        e0, e1 = int(self.indptr[r0]), int(self.indptr[r1])
        with (
            warnings.catch_warnings()
        ):  # "sparse CSR support is in beta": the product is what we use
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                self.indptr[r0 : r1 + 1] - e0,
                self.cols[e0:e1],
                coef[e0:e1],
                size=(r1 - r0, self.d),
                dtype=coef.dtype,
                device=self.device,
                check_invariants=False,
            )

    def complete(self, P, coef: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        """Completed rows r0..r1-1 (r1 - r0, d): ``C P`` with the observed entries put back
        (``P=None``: the identity, so the completed rows are Y with zeros at the missing
        entries), in coef's dtype."""
        if P is None:
            X = torch.zeros(r1 - r0, self.d, dtype=coef.dtype, device=self.device)
            e0, e1 = int(self.indptr[r0]), int(self.indptr[r1])
            X[self.rows[e0:e1] - r0, self.cols[e0:e1]] = self.vals[e0:e1].to(X.dtype)
            return X
        X = self.csr(coef, r0, r1) @ P
        e0, e1 = int(self.indptr[r0]), int(self.indptr[r1])
        X[self.rows[e0:e1] - r0, self.cols[e0:e1]] = self.vals[e0:e1].to(X.dtype)
        return X

    def row_ranges(self):
        """Row chunks (r0, r1) with at most block_elems entries of (rows, d) each."""
        return [(r0, min(self.n, r0 + self.row_chunk)) for r0 in range(0, self.n, self.row_chunk)]


def _cholesky_solve_batched(
    S: torch.Tensor, validf: torch.Tensor, y: torch.Tensor, lam: float, retries: int = 6
) -> torch.Tensor:
    """Solve (S + lam I) a = y on the real slots of a batch (b, K, K) (``validf`` 1.0 there; padded
    slots have zero rows/columns in S and get 1 * a = 0); S is overwritten. Systems whose Cholesky
    fails (rounding, lam tiny against P's scale) are retried with a 10x larger ridge each time."""
    S.diagonal(dim1=1, dim2=2).add_(validf * lam + (1.0 - validf))  # lam, or 1 on padding
    L, info = torch.linalg.cholesky_ex(S)
    bad = torch.nonzero(info).flatten()
    if len(bad):
        scale = float(S.diagonal(dim1=1, dim2=2).abs().mean())
        jitter = max(lam, torch.finfo(S.dtype).eps * scale)
        for _ in range(retries):
            jitter *= 10.0
            Sb = S[bad].clone()
            Sb.diagonal(dim1=1, dim2=2).add_(jitter * validf[bad])
            Lb, info_b = torch.linalg.cholesky_ex(Sb)
            L[bad] = Lb
            bad = bad[info_b != 0]
            if not len(bad):
                break
        else:
            raise FloatingPointError(
                f"{len(bad)} row systems are not positive definite even with a "
                f"ridge of {jitter:.3g}; increase reg_min"
            )
    z = torch.linalg.solve_triangular(L, y[..., None], upper=False)
    return torch.linalg.solve_triangular(L.mT, z, upper=True)[..., 0]


# ---- the Gram matrix, upper panels only ----------------------------------------------------------
GRAM_PANEL = 2048  # columns per panel: GEMMs stay large, and about 60% of X^T X's multiply-adds


def gram_update_(G: torch.Tensor, X: torch.Tensor, panel: int = GRAM_PANEL) -> None:
    """G[p, p:] += X[:, p]^T X[:, p:] for column panels p: the upper block triangle of X^T X (the
    blocks below the diagonal are left as they are; ``gram_mirror_`` fills them). One GEMM per
    panel, each as fast per multiply-add as the full product."""
    d = X.shape[1]
    if d <= panel:
        G.addmm_(X.T, X)
        return
    for p0 in range(0, d, panel):
        p1 = min(d, p0 + panel)
        G[p0:p1, p0:].addmm_(X[:, p0:p1].T, X[:, p0:])


def gram_mirror_(G: torch.Tensor, panel: int = GRAM_PANEL) -> None:
    """Copy the upper block triangle written by ``gram_update_`` below the diagonal."""
    d = G.shape[0]
    if d <= panel:
        return
    for p0 in range(0, d, panel):
        p1 = min(d, p0 + panel)
        G[p1:, p0:p1] = G[p0:p1, p1:].T
