// kernel_matrix: out (n x m) = K(X, Z), written whole or as one triangle mirrored (params.h).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "params.h"
#include "tiles.h"

namespace rfmfast {
namespace RFMFAST_VARIANT {

// Each tile's kernel values copied into the output rows.
template <class T>
struct MatrixTiles {
  typedef NoState State;
  const KernelMatrixParams<T>& p;
  Epilogue<T, false> epilogue;
  bool symmetric, lower;

  State make(int) const { return {}; }
  // symmetric: only the columns from the block's first row on (the upper part); the rest is
  // filled by the mirror. lower: the columns up to the block's last row.
  std::pair<int64_t, int64_t> cols(int64_t i0, int64_t mb) const {
    return {symmetric ? i0 : 0, lower ? std::min<int64_t>(p.m, i0 + mb) : p.m};
  }
  void begin(State&, int64_t, int64_t) const {}
  void tile(State&, const Tile<T>& t) const {
    const int64_t m = p.m, skip = std::max<int64_t>((symmetric ? t.i0 : 0) - t.j0, 0);
    for (int64_t i = 0; i < t.mb; ++i) {
      T* row = t.data + i * t.ld;
      const RowCtx<T> ctx{p.ex.X + (t.i0 + i) * p.ex.d, t.j0, t.nb, nullptr};
      epilogue(row, t.nbp, p.xn[t.i0 + i], t.zn, ctx);
      std::memcpy(p.out + (t.i0 + i) * m + t.j0 + skip, row + skip, sizeof(T) * (t.nb - skip));
    }
  }
  void end(State&, int64_t, int64_t) const {}
};

// out[a][b] = out[b][a] for b left of a's row block, in TB x TB blocks (cache and TLB friendly)
template <class T>
void mirror_lower(T* out, int64_t n, int64_t m, int nthreads) {
  constexpr int64_t MB = Blocks<T>::MB, TB = 64;
  const int64_t nblocks = (n + MB - 1) / MB;
  parallel_for(nblocks, threads_for(nthreads, 8.0 * double(n) * double(n)), 1, [&](int64_t ib) {
    const int64_t a0 = ib * MB, mb = std::min<int64_t>(MB, n - a0);
    for (int64_t b0 = 0; b0 < a0; b0 += TB) {
      const int64_t b1 = std::min<int64_t>(b0 + TB, a0);
      for (int64_t a = a0; a < a0 + mb; ++a) {
        T* dst = out + a * m;
        for (int64_t b = b0; b < b1; ++b) dst[b] = out[b * m + a];
      }
    }
  });
}

template <class T>
void kernel_matrix(const KernelMatrixParams<T>& p) {
  // Z is X: the full product is already exactly symmetric (a dot product and a sum of norms
  // round the same both ways). Computing one triangle and mirroring it saves arithmetic but
  // adds memory traffic, so it is used only where the distance GEMM dominates.
  const bool symmetric = p.fill == FILL_SYMMETRIC && p.r >= SYMMETRIC_MIN_R;
  const bool lower = p.fill == FILL_LOWER;
  const MatrixTiles<T> op{p, Epilogue<T, false>(p.kind, p.bandwidth, &p.ex), symmetric, lower};
  for_each_tile<T>(p, op);
  if (symmetric) mirror_lower(p.out, p.n, p.m, p.nthreads);
}

}  // namespace RFMFAST_VARIANT
}  // namespace rfmfast
