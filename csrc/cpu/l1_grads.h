// l1_grads: the gradients of f = K alpha at the queries, for l1_laplace (params.h).
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "params.h"
#include "tiles.h"

namespace rfmfast {
namespace RFMFAST_VARIANT {

// Each tile's kernel values times the signs of the pairs' coordinate differences, summed into
// the block's rows of h (written directly); the state holds one pair's signs (r).
template <class T>
struct L1GradTiles {
  typedef std::vector<T> State;
  const L1GradsParams<T>& p;
  Epilogue<T, false> epilogue;

  State make(int) const { return State(p.r); }
  std::pair<int64_t, int64_t> cols(int64_t, int64_t) const { return {0, p.m}; }
  void begin(State&, int64_t i0, int64_t mb) const {
    std::fill(p.h + i0 * p.c * p.r, p.h + (i0 + mb) * p.c * p.r, T(0));
  }
  void tile(State& sgv, const Tile<T>& t) const {
    // locals, not members: stores to h could otherwise alias the float scale
    const T s = T(p.scale);
    const int64_t r = p.r, c = p.c;
    const T *Qt = p.xt, *Xt = p.zt, *alpha = p.alpha;
    T* const H = p.h;
    T* const sg = sgv.data();
    for (int64_t i = 0; i < t.mb; ++i) {
      T* row = t.data + i * t.ld;
      epilogue(row, t.nbp, T(0), t.zn, RowCtx<T>{nullptr, 0, 0, nullptr});
      const T* u = Qt + (t.i0 + i) * r;
      T* hi = H + (t.i0 + i) * c * r;
      for (int64_t j = 0; j < t.nb; ++j) {
        const T* x = Xt + (t.j0 + j) * r;
        for (int64_t k = 0; k < r; ++k) {
          const T diff = u[k] - x[k];
          sg[k] = T((diff > 0) - (diff < 0));
        }
        for (int64_t cc = 0; cc < c; ++cc) {
          const T wv = s * alpha[(t.j0 + j) * c + cc] * row[j];
#pragma omp simd
          for (int64_t k = 0; k < r; ++k) hi[cc * r + k] += wv * sg[k];
        }
      }
    }
  }
  void end(State&, int64_t, int64_t) const {}
};

template <class T>
void l1_grads(const L1GradsParams<T>& p) {
  // no norms (p.zn null): the l1 epilogue reads a zero buffer; no distance rule
  const L1GradTiles<T> op{p, Epilogue<T, false>(L1_LAPLACE, p.bandwidth, nullptr)};
  for_each_tile<T>(p, op);
}

}  // namespace RFMFAST_VARIANT
}  // namespace rfmfast
