// kernel_matmul: out (n x t) = K(X, Z) V, the kernel matrix never stored (params.h).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "params.h"
#include "tiles.h"

namespace rfmfast {
namespace RFMFAST_VARIANT {

// C (mbp x tp) += the tile's kernel values times the matching rows of V: by row dot products
// with vt = V^T (t x m, t <= SMALL_T), else by the value GEMM with vp = pack_values(V).
template <class T>
inline void values_step(const Tile<T>& tl, const T* vp, const T* vt, int64_t m, int64_t t,
                        int64_t tp, T* C) {
  constexpr int W = VT<T>::W;
  if (vp == nullptr) {  // vectorized row dot products
    const int64_t nb = tl.nb;
    for (int64_t i = 0; i < tl.mb; ++i) {
      const T* row = tl.data + i * tl.ld;
      for (int64_t c = 0; c < t; ++c) {
        const T* v = vt + c * m + tl.j0;
        vec<T> acc{};
        int64_t j = 0;
        for (; j + W <= nb; j += W) acc += load(row + j) * load(v + j);
        T s = 0;
        for (int l = 0; l < W; ++l) s += acc[l];
        for (; j < nb; ++j) s += row[j] * v[j];
        C[i * tp + c] += s;
      }
    }
  } else {
    value_tile(tl.data, tl.mbp, tl.nb, vp, m, tl.j0, tp, C);
  }
}

// Each tile's kernel values times the matching rows of V, summed into the block's rows of K V
// (the state C, MB x tp): by row dot products with V^T (vt, t <= SMALL_T), else the value GEMM.
template <class T>
struct MatmulTiles {
  typedef std::vector<T> State;
  const KernelMatmulParams<T>& p;
  Epilogue<T, false> epilogue;
  int64_t tp;  // C's row stride: t, or t rounded up to NR for the value GEMM

  State make(int) const { return State(Blocks<T>::MB * tp); }
  std::pair<int64_t, int64_t> cols(int64_t, int64_t) const { return {0, p.m}; }
  void begin(State& C, int64_t, int64_t) const { std::fill(C.begin(), C.end(), T(0)); }
  void tile(State& C, const Tile<T>& tl) const {
    for (int64_t i = 0; i < tl.mb; ++i) {
      const RowCtx<T> ctx{p.ex.X + (tl.i0 + i) * p.ex.d, tl.j0, tl.nb, nullptr};
      epilogue(tl.data + i * tl.ld, tl.nbp, p.xn[tl.i0 + i], tl.zn, ctx);
    }
    values_step(tl, p.vp, p.vt, p.m, p.t, tp, C.data());
  }
  void end(State& C, int64_t i0, int64_t mb) const {
    for (int64_t i = 0; i < mb; ++i)
      std::memcpy(p.out + (i0 + i) * p.t, C.data() + i * tp, sizeof(T) * p.t);
  }
};

template <class T>
void kernel_matmul(const KernelMatmulParams<T>& p) {
  const int64_t tp = p.vp == nullptr ? p.t : round_up(p.t, VT<T>::NR);
  const MatmulTiles<T> op{p, Epilogue<T, false>(p.kind, p.bandwidth, &p.ex), tp};
  for_each_tile<T>(p, op);
}

}  // namespace RFMFAST_VARIANT
}  // namespace rfmfast
