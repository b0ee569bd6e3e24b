// kernel_grads: the gradients of f = K alpha at the queries, for laplace and gaussian (params.h).
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "params.h"
#include "tiles.h"

namespace rfmfast {
namespace RFMFAST_VARIANT {

template <class T>
struct GradState {
  std::vector<T> C;  // the block's rows of A V
  std::vector<T> D;  // the block's direct terms sum_j w alpha_jc (q - x_j) of resolved pairs
  std::vector<std::pair<int64_t, T>> resolved;
};

// Each tile's gradient weights: the resolved pairs' terms added directly (D), the rest through
// the value GEMM with V = [alpha_1 X | ... | alpha_c X | alpha] (C); H from both at the end.
template <class T>
struct GradTiles {
  typedef GradState<T> State;
  const KernelGradsParams<T>& p;
  Epilogue<T, true> epilogue;
  int64_t wp;  // C's row stride: c d + c rounded up to NR

  State make(int) const {
    return State{std::vector<T>(Blocks<T>::MB * wp), std::vector<T>(Blocks<T>::MB * p.c * p.d), {}};
  }
  std::pair<int64_t, int64_t> cols(int64_t, int64_t) const { return {0, p.m}; }
  void begin(State& st, int64_t, int64_t) const {
    std::fill(st.C.begin(), st.C.end(), T(0));
    std::fill(st.D.begin(), st.D.end(), T(0));
  }
  void tile(State& st, const Tile<T>& t) const {
    const int64_t d = p.d, c = p.c;
    for (int64_t i = 0; i < t.mb; ++i) {
      st.resolved.clear();
      const T* qi = p.ex.X + (t.i0 + i) * d;  // original rows: exact differences
      const RowCtx<T> ctx{qi, t.j0, t.nb, &st.resolved};
      epilogue(t.data + i * t.ld, t.nbp, p.xn[t.i0 + i], t.zn, ctx);
      T* di = st.D.data() + i * c * d;
      for (const auto& [j, wt] : st.resolved) {
        const T* xj = p.ex.Z + j * d;
        for (int64_t cc = 0; cc < c; ++cc) {
          const T f = wt * p.alpha[j * c + cc];
          for (int64_t k = 0; k < d; ++k) di[cc * d + k] += f * (qi[k] - xj[k]);
        }
      }
    }
    // rows mb..mbp of the tile hold the padded (zero) queries' weights: harmless, unused
    value_tile(t.data, t.mbp, t.nb, p.vp, p.m, t.j0, wp, st.C.data());
  }
  void end(State& st, int64_t i0, int64_t mb) const {
    const int64_t d = p.d, c = p.c, wp = this->wp;
    const T s = T(p.scale);
    for (int64_t i = 0; i < mb; ++i) {
      const T* ci = st.C.data() + i * wp;
      const T* di = st.D.data() + i * c * d;
      const T* qi = p.q + (i0 + i) * d;
      T* hi = p.h + (i0 + i) * c * d;
      for (int64_t cc = 0; cc < c; ++cc) {
        const T a = ci[c * d + cc];  // (A alpha_c)_i
        for (int64_t k = 0; k < d; ++k)
          hi[cc * d + k] = s * ((a * qi[k] - ci[cc * d + k]) + di[cc * d + k]);
      }
    }
  }
};

template <class T>
void kernel_grads(const KernelGradsParams<T>& p) {
  const int64_t wp = round_up(p.c * p.d + p.c, VT<T>::NR);
  const GradTiles<T> op{p, Epilogue<T, true>(p.kind, p.bandwidth, &p.ex, p.eps), wp};
  for_each_tile<T>(p, op);
}

}  // namespace RFMFAST_VARIANT
}  // namespace rfmfast
