// prepare: points translated, mapped by M's factor, and their squared norms (params.h).
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "parallel.h"
#include "params.h"
#include "simd.h"

namespace rfmfast {
namespace RFMFAST_VARIANT {

template <class T>
void prepare(const PrepareParams<T>& p) {
  constexpr int W = VT<T>::W;
  const T *X = p.x, *mu = p.mu, *S = p.s;
  const int64_t n = p.n, d = p.d, r = p.r, rp = round_up(r, W);
  const int s_mode = p.s_mode;
  T *Xt = p.xt, *norms = p.norms;
  std::vector<T> St;  // S^T (d x rp), zero padded: lanes over the output coordinate
  if (s_mode == 2) {
    St.assign(d * rp, T(0));
    for (int64_t l = 0; l < r; ++l)
      for (int64_t k = 0; k < d; ++k) St[k * rp + l] = S[l * d + k];
  }
  struct Scratch {
    std::vector<T> row, xc;
  };
  const int nt = threads_for(p.nthreads, double(n) * double(s_mode == 2 ? d * rp : d + r) * 4.0);
  parallel_for(
      n, nt, chunk_for(n, nt), [&](int) { return Scratch{std::vector<T>(rp), std::vector<T>(d)}; },
      [&](Scratch& sc, int64_t i) {
        std::vector<T>& row = sc.row;
        std::vector<T>& xc = sc.xc;
        const T* x = X + i * d;
        if (mu != nullptr) {
          for (int64_t k = 0; k < d; ++k) xc[k] = x[k] - mu[k];
          x = xc.data();
        }
        if (s_mode == 2) {
          for (int64_t l = 0; l < rp; l += W) {
            vec<T> acc{};
            for (int64_t k = 0; k < d; ++k) acc += bcast<T>(x[k]) * load(St.data() + k * rp + l);
            store(row.data() + l, acc);
          }
        } else {
          for (int64_t k = 0; k < r; ++k) row[k] = s_mode == 1 ? x[k] * S[k] : x[k];
        }
        std::memcpy(Xt + i * r, row.data(), sizeof(T) * r);
        // the squared norm in wider arithmetic, rounded once: it is the largest term of
        // |x|^2 + |z|^2 - 2 x.z, so its rounding dominates the distance error otherwise.
        // (Self-pairs come out exactly 0 by the distance rule's differences, not by this sum.)
        Wide<T> acc = 0;
        for (int64_t k = 0; k < r; ++k) acc += Wide<T>(row[k]) * Wide<T>(row[k]);
        norms[i] = T(acc);
      });
}

}  // namespace RFMFAST_VARIANT
}  // namespace rfmfast
