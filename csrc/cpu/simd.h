// SIMD primitives: vector types, the register-tile shape, and math on vectors (fma, sqrt, exp).
//
// For the instruction set being compiled. Every header under csrc/cpu/ except kernels.h and
// params.h is compiled once per instruction set (variant_<isa>.cpp), each copy in the namespace
// named by RFMFAST_VARIANT, written once with GCC/Clang vector extensions.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__SSE2__)
#include <immintrin.h>
#endif

#ifndef RFMFAST_VARIANT
#error "RFMFAST_VARIANT names the instruction-set variant being compiled (variant_<isa>.cpp)"
#endif

namespace rfmfast {
namespace RFMFAST_VARIANT {

// Bytes per vector, and the register tile of the GEMMs: MR rows x NV vectors of accumulators.
#if defined(__AVX512F__)
constexpr int VBYTES = 64;
constexpr int MR = 12;
#elif defined(__AVX2__)
constexpr int VBYTES = 32;
constexpr int MR = 6;
#else
constexpr int VBYTES = 16;
constexpr int MR = 4;
#endif
constexpr int NV = 2;  // vectors per tile row

template <class T>
struct VT {
  typedef T v __attribute__((vector_size(VBYTES)));
  static constexpr int W = VBYTES / int(sizeof(T));  // lanes
  static constexpr int NR = NV * W;                  // tile columns = panel width
};
template <class T>
using vec = typename VT<T>::v;

template <class T>
inline vec<T> load(const T* p) {
  vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <class T>
inline void store(T* p, vec<T> v) {
  std::memcpy(p, &v, sizeof(v));
}
template <class T>
inline vec<T> bcast(T x) {
  return x - vec<T>{};  // every lane = x
}

// a * b + c, fused where the ISA has FMA. Used by every dot product, so that a point's norm and
// its dot product with itself round identically (self-distances come out exactly 0).
inline vec<float> vfma(vec<float> a, vec<float> b, vec<float> c) {
#if defined(__AVX512F__)
  return (vec<float>)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__FMA__)
  return (vec<float>)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
  return a * b + c;  // the generic variant is built with -ffp-contract=off: never fused
#endif
}
inline vec<double> vfma(vec<double> a, vec<double> b, vec<double> c) {
#if defined(__AVX512F__)
  return (vec<double>)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#elif defined(__FMA__)
  return (vec<double>)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#else
  return a * b + c;
#endif
}

inline vec<float> vsqrt(vec<float> x) {
#if defined(__AVX512F__)
  return (vec<float>)_mm512_sqrt_ps((__m512)x);
#elif defined(__AVX2__)
  return (vec<float>)_mm256_sqrt_ps((__m256)x);
#elif defined(__SSE2__)
  return (vec<float>)_mm_sqrt_ps((__m128)x);
#else
  for (int l = 0; l < VT<float>::W; ++l) x[l] = std::sqrt(x[l]);
  return x;
#endif
}
inline vec<double> vsqrt(vec<double> x) {
#if defined(__AVX512F__)
  return (vec<double>)_mm512_sqrt_pd((__m512d)x);
#elif defined(__AVX2__)
  return (vec<double>)_mm256_sqrt_pd((__m256d)x);
#elif defined(__SSE2__)
  return (vec<double>)_mm_sqrt_pd((__m128d)x);
#else
  for (int l = 0; l < VT<double>::W; ++l) x[l] = std::sqrt(x[l]);
  return x;
#endif
}

// true when a[l] <= b[l] in any lane (one compare and a mask test)
inline bool any_le(vec<float> a, vec<float> b) {
#if defined(__AVX512F__)
  return _mm512_cmp_ps_mask((__m512)a, (__m512)b, _CMP_LE_OQ) != 0;
#elif defined(__AVX2__)
  return _mm256_movemask_ps(_mm256_cmp_ps((__m256)a, (__m256)b, _CMP_LE_OQ)) != 0;
#elif defined(__SSE2__)
  return _mm_movemask_ps(_mm_cmple_ps((__m128)a, (__m128)b)) != 0;
#else
  for (int l = 0; l < VT<float>::W; ++l)
    if (a[l] <= b[l]) return true;
  return false;
#endif
}
inline bool any_le(vec<double> a, vec<double> b) {
#if defined(__AVX512F__)
  return _mm512_cmp_pd_mask((__m512d)a, (__m512d)b, _CMP_LE_OQ) != 0;
#elif defined(__AVX2__)
  return _mm256_movemask_pd(_mm256_cmp_pd((__m256d)a, (__m256d)b, _CMP_LE_OQ)) != 0;
#elif defined(__SSE2__)
  return _mm_movemask_pd(_mm_cmple_pd((__m128d)a, (__m128d)b)) != 0;
#else
  for (int l = 0; l < VT<double>::W; ++l)
    if (a[l] <= b[l]) return true;
  return false;
#endif
}

// exp(x) for x <= ~0 (kernel exponents): Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a
// Taylor polynomial (degree 7 for float, 12 for double: error below half an ulp of the
// polynomial's range), and 2^n from the exponent bits. Inputs below the smallest normal result
// give 0, as libm does to within a denormal.
template <class T>
struct ExpConst;
template <>
struct ExpConst<float> {
  typedef int32_t I;
  static constexpr float lo = -87.3f, hi = 88.0f, magic = 12582912.0f;  // 1.5 * 2^23
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  static constexpr int mant = 23, bias = 127, deg = 7;
};
template <>
struct ExpConst<double> {
  typedef int64_t I;
  static constexpr double lo = -708.0, hi = 709.0, magic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double ln2_hi = 6.93147180369123816490e-01;
  static constexpr double ln2_lo = 1.90821492927058770002e-10;
  static constexpr int mant = 52, bias = 1023, deg = 12;
};

template <class T>
inline vec<T> vexp(vec<T> x) {
  typedef ExpConst<T> C;
  typedef typename C::I I;
  typedef I vi __attribute__((vector_size(VBYTES)));
  const vec<T> lo = bcast<T>(C::lo), hi = bcast<T>(C::hi);
  auto underflow = x < lo;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const vec<T> magic = bcast<T>(C::magic);
  vec<T> t = x * T(1.4426950408889634) + magic;
  vec<T> nf = t - magic;
  vec<T> r = x - nf * T(C::ln2_hi);
  r = r - nf * T(C::ln2_lo);
  // Horner on 1 + r + r^2/2! + ... + r^deg/deg!
  vec<T> p = bcast<T>(T(1));
  for (int k = C::deg; k >= 1; --k) p = p * (r * T(1.0 / k)) + T(1);
  vi ni = (vi)t - (vi)magic;
  vi bits = (ni + I(C::bias)) << C::mant;
  vec<T> scale = (vec<T>)bits;
  vec<T> res = p * scale;
  return underflow ? vec<T>{} : res;
}

// Wider arithmetic for sums whose rounding matters (squared norms, exact distances).
template <class T>
using Wide = typename std::conditional<sizeof(T) == 4, double, long double>::type;

// x rounded up to a multiple of m
inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

}  // namespace RFMFAST_VARIANT
}  // namespace rfmfast
