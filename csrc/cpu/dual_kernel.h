// dual_kernel: the depth recursion of a dual activation psi on rho = x.z, in place on the output
// (one pass over memory; each entry's depth steps run in registers, a block of entries at a time
// so that the polynomial activations vectorize).
//   NNGP: S_l = psi(S_{l-1})                    -> S_depth
//   NTK:  K_l = psi(S_{l-1}) + K_{l-1} psi'(S_{l-1}), S_l = psi(S_{l-1}), K_0 = S_0 = rho -> K_depth
// S is clipped to [-1, 1] after every step (psi maps [-1, 1] into itself; the clip only catches
// rounding, and keeps acos / asin defined).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels.h"
#include "parallel.h"

namespace rfmfast {
namespace RFMFAST_VARIANT {

namespace dual {

constexpr int64_t BLOCK = 256;

template <class T>
inline T clip1(T s) {
  return s > T(1) ? T(1) : (s < T(-1) ? T(-1) : s);
}

// psi and psi' of the non-polynomial activations (codes in kernels.h). den is psi's normalizer
// computed in T by the same function as the numerator (sinh(a), asin(2/3)), and psi divides by
// it: psi(1) is then exactly 1. (A multiplication by 1 / den, rounded separately, can leave
// psi(1) one ulp below 1, and 1 is a repelling fixed point: the diagonal would decay to 0.)
template <class T>
inline void psi_dpsi(int act, T a, T den, T s, T& ps, T& dps) {
  const T pi = T(3.14159265358979323846);
  switch (act) {
    case DUAL_RELU: {  // arc-cosine: (s (pi - acos s) + sqrt(1 - s^2)) / pi
      const T t = pi - std::acos(s);
      ps = (s * t + std::sqrt(std::max(T(0), T(1) - s * s))) / pi;
      dps = t / pi;
      break;
    }
    case DUAL_ERF: {  // asin(2 s / 3) / asin(2 / 3); den = asin(2 / 3) in T
      ps = std::asin(T(2) * s / T(3)) / den;
      dps = (T(2) / T(3)) / (den * std::sqrt(T(1) - T(4) * s * s / T(9)));
      break;
    }
    default: {  // DUAL_SINE: sinh(a s) / sinh(a); den = sinh(a) in T
      ps = std::sinh(a * s) / den;
      dps = a * std::cosh(a * s) / den;
      break;
    }
  }
}

}  // namespace dual

template <class T>
void dual_recursion(const DualParams<T>& p) {
  using namespace dual;
  const int64_t nblocks = (p.count + BLOCK - 1) / BLOCK;
  const double per_step = p.act == DUAL_POLY ? 2.0 * p.degree + 2.0 : 40.0;
  const double work = double(p.count) * double(std::max(p.depth, 1)) * per_step;
  const int nt = threads_for(p.nthreads, work);
  const T* c = p.coeffs;
  const int deg = p.degree;
  const T a = T(p.param);
  const T den = p.act == DUAL_ERF ? std::asin(T(2) / T(3)) : std::sinh(a);
  parallel_for(nblocks, nt, chunk_for(nblocks, nt), [&](int64_t b) {
    T* x = p.out + b * BLOCK;
    const int64_t len = std::min<int64_t>(BLOCK, p.count - b * BLOCK);
    T s[BLOCK], k[BLOCK];
    for (int64_t e = 0; e < len; ++e) s[e] = k[e] = clip1(x[e]);
    if (p.act == DUAL_POLY) {
      // Horner's rule term by term across the block: each inner loop is one vector FMA per
      // lane group, the block's entries independent of each other
      T v[BLOCK], dv[BLOCK];
      for (int l = 0; l < p.depth; ++l) {
        for (int64_t e = 0; e < len; ++e) v[e] = c[deg];
        for (int j = deg - 1; j >= 0; --j) {
          const T cj = c[j];
#pragma omp simd
          for (int64_t e = 0; e < len; ++e) v[e] = v[e] * s[e] + cj;
        }
        if (p.ntk) {
          for (int64_t e = 0; e < len; ++e) dv[e] = T(deg) * c[deg];
          for (int j = deg - 1; j >= 1; --j) {
            const T cj = T(j) * c[j];
#pragma omp simd
            for (int64_t e = 0; e < len; ++e) dv[e] = dv[e] * s[e] + cj;
          }
          if (deg < 1)
            for (int64_t e = 0; e < len; ++e) dv[e] = T(0);
#pragma omp simd
          for (int64_t e = 0; e < len; ++e) k[e] = v[e] + k[e] * dv[e];
        }
#pragma omp simd
        for (int64_t e = 0; e < len; ++e) s[e] = clip1(v[e]);
      }
    } else {
      for (int l = 0; l < p.depth; ++l)
        for (int64_t e = 0; e < len; ++e) {
          T ps, dps;
          psi_dpsi(p.act, a, den, s[e], ps, dps);
          if (p.ntk) k[e] = ps + k[e] * dps;
          s[e] = clip1(ps);
        }
    }
    const T* r = p.ntk ? k : s;
    for (int64_t e = 0; e < len; ++e) x[e] = r[e];
  });
}

}  // namespace RFMFAST_VARIANT
}  // namespace rfmfast
