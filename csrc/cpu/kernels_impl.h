// The CPU kernels, written once with GCC/Clang vector extensions and compiled once per
// instruction set (CMakeLists.txt: generic, avx2, avx512), each copy in the namespace named by
// RFMFAST_VARIANT. Structure (MATH.md): a distance GEMM on register tiles, an elementwise
// epilogue (sqrt, exp, 1/distance) on an L2-resident tile, and a second GEMM of that tile with a
// value matrix. Nothing of size n x m (or q x n x d) is ever stored, except by kernel_matrix
// whose output it is.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <type_traits>
#include <utility>
#include <cmath>
#include <cstring>
#include <vector>

#include <omp.h>

#include "kernels.h"

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__SSE2__)
#include <immintrin.h>
#endif

namespace rfmfast {
namespace RFMFAST_VARIANT {

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
constexpr int NV = 2;  // vectors per panel row

template <class T>
struct VT {
  typedef T v __attribute__((vector_size(VBYTES)));
  static constexpr int W = VBYTES / int(sizeof(T));
  static constexpr int NR = NV * W;
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

// ---- elementwise math on vectors -------------------------------------------------------------
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
  static constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
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

// ---- packing -------------------------------------------------------------------------------------
template <class T>
int64_t packed_size(int64_t rows, int64_t cols) {
  constexpr int NR = VT<T>::NR;
  return ((cols + NR - 1) / NR) * NR * std::max<int64_t>(rows, 1);
}

// rows [0, rows <= NR) x depth [0, kc) of B (row-major, ldb) -> one [kc][NR] panel (zero padded):
// the B operand of every register-tile GEMM (distance tiles, and the Cholesky's gemm_nt)
template <class T>
inline void pack_b_panel(const T* B, int64_t ldb, int64_t rows, int64_t kc, T* dst) {
  constexpr int NR = VT<T>::NR;
  for (int64_t j = 0; j < rows; ++j) {
    const T* src = B + j * ldb;
    for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = src[k];
  }
  for (int64_t j = rows; j < NR; ++j)
    for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = T(0);
}

// points P (n x r) -> [panel][k][NR]: panel p holds points p*NR .. p*NR+NR-1 (zero padded)
template <class T>
void pack_points(const T* P, int64_t n, int64_t r, T* out) {
  constexpr int NR = VT<T>::NR;
  const int64_t panels = (n + NR - 1) / NR;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < panels; ++p)
    pack_b_panel(P + p * NR * r, r, std::min<int64_t>(NR, n - p * NR), r, out + p * r * NR);
}

// values V (n x w) -> [panel][i][NR]: panel p holds columns p*NR .. p*NR+NR-1 (zero padded)
template <class T>
void pack_values(const T* V, int64_t n, int64_t w, T* out) {
  constexpr int NR = VT<T>::NR;
  const int64_t panels = (w + NR - 1) / NR;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < panels; ++p) {
      T* dst = out + (p * n + i) * NR;
      for (int j = 0; j < NR; ++j) {
        int64_t col = p * NR + j;
        dst[j] = col < w ? V[i * w + col] : T(0);
      }
    }
}

// [alpha_1 X | ... | alpha_c X | alpha] (n x w, w = c d + c) -> pack_values' layout, built
// panel by panel from X (n x d) and alpha (n x c): the unpacked matrix never exists.
template <class T>
void pack_grad_values(const T* X, const T* alpha, int64_t n, int64_t d, int64_t c, T* out) {
  constexpr int NR = VT<T>::NR;
  const int64_t w = c * d + c, panels = (w + NR - 1) / NR;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T* x = X + i * d;
    const T* a = alpha + i * c;
    for (int64_t p = 0; p < panels; ++p) {
      T* dst = out + (p * n + i) * NR;
      for (int j = 0; j < NR; ++j) {
        const int64_t col = p * NR + j;
        T v = T(0);
        if (col < c * d)
          v = a[col / d] * x[col % d];
        else if (col < w)
          v = a[col - c * d];
        dst[j] = v;
      }
    }
  }
}

// ---- the register-tile GEMM ----------------------------------------------------------------------
// C[i][0:NR] (+)= sum_k A[i*lda + k] * Bp[k*NR + 0:NR]     for i < MR
// (L1: sum_k |A[i*lda+k] - Bp[k*NR+j]| instead of the product)
template <class T, bool L1>
inline void ukernel(int64_t K, const T* A, int64_t lda, const T* Bp, T* C, int64_t ldc,
                    bool accumulate) {
  constexpr int W = VT<T>::W, NR = VT<T>::NR;
  vec<T> acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = accumulate ? load(C + i * ldc + v * W) : vec<T>{};
  for (int64_t k = 0; k < K; ++k) {
    vec<T> b[NV];
    for (int v = 0; v < NV; ++v) b[v] = load(Bp + k * NR + v * W);
    for (int i = 0; i < MR; ++i) {
      vec<T> a = bcast<T>(A[i * lda + k]);
      for (int v = 0; v < NV; ++v) {
        if constexpr (L1) {
          vec<T> diff = a - b[v];
          acc[i][v] += diff < T(0) ? -diff : diff;
        } else {
          acc[i][v] = vfma(a, b[v], acc[i][v]);
        }
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) store(C + i * ldc + v * W, acc[i][v]);
}

// ---- tiles ---------------------------------------------------------------------------------------
template <class T>
struct Blocks {
  static constexpr int NR = VT<T>::NR;
  static constexpr int64_t MB = MR * 8;  // rows of a tile
  static constexpr int64_t NB = 512;     // columns of a tile (multiple of NR)
  static constexpr int64_t LD = NB + 16; // tile row stride: not a power of two (cache sets)
};

// Copy rows [i0, i0+mb) of X (n x r) into A (MB x r), zero padding the missing rows.
template <class T>
inline void load_rows(const T* X, int64_t i0, int64_t mb, int64_t r, T* A) {
  std::memcpy(A, X + i0 * r, sizeof(T) * mb * r);
  std::memset(A + mb * r, 0, sizeof(T) * (Blocks<T>::MB - mb) * r);
}

// Tile[i][0:nbp] = raw distance stage (dot products, or l1 distances) of A's rows against the
// points j0 .. j0+nb of the packed points Zp.
template <class T>
inline void distance_tile(const T* A, int64_t mbp, int64_t r, const T* Zp, int64_t j0, int64_t nb,
                          bool l1, T* tile, int64_t ldt) {
  constexpr int NR = VT<T>::NR;
  const int64_t p0 = j0 / NR, np = (nb + NR - 1) / NR;
  for (int64_t p = 0; p < np; ++p) {
    const T* Bp = Zp + (p0 + p) * r * NR;
    for (int64_t i = 0; i < mbp; i += MR) {
      if (l1)
        ukernel<T, true>(r, A + i * r, r, Bp, tile + i * ldt + p * NR, ldt, false);
      else
        ukernel<T, false>(r, A + i * r, r, Bp, tile + i * ldt + p * NR, ldt, false);
    }
  }
}

// ||S (x - z)||^2 of original rows x, z (d), in wider arithmetic; 0 for identical rows.
template <class T>
inline T exact_d2(const T* x, const T* z, const Exact<T>& ex) {
  const int64_t d = ex.d;
  if (std::memcmp(x, z, sizeof(T) * d) == 0) return T(0);
  Wide<T> s = 0;
  if (ex.s_mode == 2) {
    const int64_t r = ex.r;
    for (int64_t l = 0; l < r; ++l) {
      const T* Sl = ex.S + l * d;
      Wide<T> a = 0;
      for (int64_t k = 0; k < d; ++k) a += Wide<T>(Sl[k]) * (Wide<T>(x[k]) - Wide<T>(z[k]));
      s += a * a;
    }
  } else {
    for (int64_t k = 0; k < d; ++k) {
      Wide<T> dk = Wide<T>(x[k]) - Wide<T>(z[k]);
      if (ex.s_mode == 1) dk *= Wide<T>(ex.S[k]);
      s += dk * dk;
    }
  }
  return T(s);
}

// What the epilogue needs for the distance rule: the row's original point, the first column
// of the tile and its width; in gradient mode, where resolved pairs go.
template <class T>
struct RowCtx {
  const Exact<T>* ex;
  const T* x;      // the query's original row (d)
  int64_t j0, nb;
  std::vector<std::pair<int64_t, T>>* resolved;  // gradient mode: (column, weight) of such pairs
};

// The epilogue on one tile row: raw distance stage -> kernel value (weight = false) or the
// gradient weight (weight = true: K / D for laplace, K for gaussian; 0 for coincident pairs).
// With ctx.resolved set, pairs resolved by differences are listed there and zeroed in the row.
template <class T>
inline void epilogue_row(T* row, int64_t nbp, T xn_i, const T* zn, int kind, T bw, bool weight,
                         T eps, const RowCtx<T>& ctx) {
  constexpr int W = VT<T>::W;
  const T inv = T(1) / bw, ginv = T(-0.5) / (bw * bw);
  const T res = ctx.ex == nullptr ? T(0) : T(ctx.ex->resolve);
  const vec<T> xn = bcast<T>(xn_i), zero{}, ratio = bcast<T>(res);
  for (int64_t j = 0; j < nbp; j += W) {
    vec<T> t = load(row + j);
    vec<T> out;
    if (kind == L1_LAPLACE) {
      out = vexp<T>(t * -inv);
    } else {
      const vec<T> s = xn + load(zn + j);
      vec<T> d2 = s - T(2) * t;
      d2 = d2 > zero ? d2 : zero;
      bool fixed = false;
      vec<T> fix_mask{};
      if (ctx.ex != nullptr && any_le(d2, ratio * s)) {  // rare: near pairs, self-pairs
        const Exact<T>& ex = *ctx.ex;
        for (int l = 0; l < W; ++l) {
          if (j + l < ctx.nb && d2[l] <= res * s[l]) {
            d2[l] = exact_d2(ctx.x, ex.Z + (ctx.j0 + j + l) * ex.d, ex);
            fix_mask[l] = T(1);
            fixed = true;
          }
        }
      }
      if (kind == GAUSSIAN) {
        out = vexp<T>(d2 * ginv);
        if (weight) out = d2 > zero ? out : zero;  // coincident: no gradient term
      } else {
        vec<T> dist = vsqrt(d2);
        vec<T> k = vexp<T>(dist * -inv);
        if (weight) {
          vec<T> safe = dist < eps ? bcast<T>(T(1)) : dist;
          out = dist < eps ? zero : k / safe;
        } else {
          out = k;
        }
      }
      if (fixed && ctx.resolved != nullptr) {
        for (int l = 0; l < W; ++l)
          if (fix_mask[l] != T(0)) {
            if (out[l] != T(0)) ctx.resolved->emplace_back(ctx.j0 + j + l, out[l]);
            out[l] = T(0);
          }
      }
    }
    store(row + j, out);
  }
}

// Norms padded to the tile width, so the epilogue can read whole vectors.
template <class T>
inline void load_norms(const T* zn, int64_t j0, int64_t nb, int64_t nbp, T* buf) {
  std::memcpy(buf, zn + j0, sizeof(T) * nb);
  for (int64_t j = nb; j < nbp; ++j) buf[j] = T(0);
}

template <class T>
inline int64_t round_up(int64_t x, int64_t m) {
  return (x + m - 1) / m * m;
}

// ---- ops -----------------------------------------------------------------------------------------
template <class T>
void prepare(const T* X, int64_t n, int64_t d, const T* mu, const T* S, int s_mode, int64_t r,
             T* Xt, T* norms, int nthreads) {
  constexpr int W = VT<T>::W;
  const int64_t rp = round_up<T>(r, W);
  std::vector<T> St;  // S^T (d x rp), zero padded: lanes over the output coordinate
  if (s_mode == 2) {
    St.assign(d * rp, T(0));
    for (int64_t l = 0; l < r; ++l)
      for (int64_t k = 0; k < d; ++k) St[k * rp + l] = S[l * d + k];
  }
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> row(rp), xc(d);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
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
    }
  }
}

// The loop every op shares: row blocks of MB points of P (the mapped queries, norms pn) over
// the threads, and for each block the column tiles [j0, j0 + nb) of the packed points Zp up to
// cols(i0, mb) = (first, end), each turned into a raw distance tile (dot products, or l1
// distances) with the column norms beside it. The op supplies, per thread, a state made by
// make() and three steps: begin(state, i0, mb) before a block, tile(state, i0, mb, mbp, j0, nb,
// nbp, tile, ld, zn_tile) for each tile (the epilogue and what consumes it), end(state, i0, mb).
template <class T, class Make, class Cols, class Begin, class Tile, class End>
void for_each_tile(const T* P, int64_t np, int64_t r, const T* Zp, const T* zn, bool l1,
                   int nthreads, Make make, Cols cols, Begin begin, Tile tile_step, End end) {
  typedef Blocks<T> B;
  const int64_t nblocks = (np + B::MB - 1) / B::MB;
  std::atomic<bool> stop{false};
  auto last_poll = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> A(B::MB * std::max<int64_t>(r, 1)), tile(B::MB * B::LD), znb(B::NB, T(0));
    auto state = make();
#pragma omp for schedule(dynamic, 1)
    for (int64_t ib = 0; ib < nblocks; ++ib) {
      if (stop.load(std::memory_order_relaxed)) continue;
      if (omp_get_thread_num() == 0 && poll_interrupt != nullptr) {  // the calling thread
        const auto now = std::chrono::steady_clock::now();
        if (now - last_poll > std::chrono::milliseconds(20)) {
          last_poll = now;
          if (poll_interrupt()) stop.store(true);
        }
      }
      const int64_t i0 = ib * B::MB, mb = std::min<int64_t>(B::MB, np - i0);
      const int64_t mbp = round_up<T>(mb, MR);
      load_rows(P, i0, mb, r, A.data());
      begin(state, i0, mb);
      const auto [first, cend] = cols(i0, mb);
      for (int64_t j0 = first / B::NR * B::NR; j0 < cend; j0 += B::NB) {
        const int64_t nb = std::min<int64_t>(B::NB, cend - j0), nbp = round_up<T>(nb, B::NR);
        distance_tile(A.data(), mbp, r, Zp, j0, nb, l1, tile.data(), B::LD);
        if (zn != nullptr) load_norms(zn, j0, nb, nbp, znb.data());
        tile_step(state, i0, mb, mbp, j0, nb, nbp, tile.data(), B::LD, znb.data());
      }
      end(state, i0, mb);
    }
  }
  if (stop.load()) throw Interrupted{};
}

struct NoState {};

// For the calling thread outside parallel regions (the Cholesky's recursion): poll for Ctrl-C
// at most every 20 ms and throw Interrupted when it was pressed.
inline void check_interrupt() {
  if (poll_interrupt == nullptr) return;
  thread_local auto last = std::chrono::steady_clock::now();
  const auto now = std::chrono::steady_clock::now();
  if (now - last < std::chrono::milliseconds(20)) return;
  last = now;
  if (poll_interrupt()) throw Interrupted{};
}

template <class T>
void kernel_matrix(const T* Xt, const T* xn, int64_t n, const T* Zp, const T* zn, int64_t m,
                   int64_t r, int kind, double bandwidth, const Exact<T>& ex, int fill, T* out,
                   int nthreads) {
  typedef Blocks<T> B;
  // Z is X: the full product is already exactly symmetric (a dot product and a sum of norms
  // round the same both ways). Computing one triangle and transposing it saves arithmetic but
  // adds memory traffic, so it is used only where the distance GEMM dominates (r >= 96).
  const bool symmetric = fill == FILL_SYMMETRIC && r >= 96;
  const bool lower = fill == FILL_LOWER;
  // symmetric: only the columns from the block's first row on (the upper part); the rest is
  // filled by the blocked transpose below. lower: the columns up to the block's last row.
  auto cols = [&](int64_t i0, int64_t mb) {
    return std::pair<int64_t, int64_t>(symmetric ? i0 : 0,
                                       lower ? std::min<int64_t>(m, i0 + mb) : m);
  };
  auto step = [=](NoState&, int64_t i0, int64_t mb, int64_t, int64_t j0, int64_t nb,
                  int64_t nbp, T* tile, int64_t ld, const T* znb) {
    const int64_t skip = std::max<int64_t>((symmetric ? i0 : 0) - j0, 0);
    for (int64_t i = 0; i < mb; ++i) {
      T* row = tile + i * ld;
      const RowCtx<T> ctx{&ex, ex.X + (i0 + i) * ex.d, j0, nb, nullptr};
      epilogue_row<T>(row, nbp, xn[i0 + i], znb, kind, T(bandwidth), false, T(0), ctx);
      std::memcpy(out + (i0 + i) * m + j0 + skip, row + skip, sizeof(T) * (nb - skip));
    }
  };
  auto none = [](NoState&, int64_t, int64_t) {};
  for_each_tile<T>(Xt, n, r, Zp, zn, kind == L1_LAPLACE, nthreads, [] { return NoState{}; },
                   cols, none, step, none);
  if (symmetric) {
    // out[a][b] = out[b][a] for b left of a's block, in 64 x 64 blocks (cache and TLB friendly)
    constexpr int64_t TB = 64;
    const int64_t nblocks = (n + B::MB - 1) / B::MB;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t ib = 0; ib < nblocks; ++ib) {
      const int64_t a0 = ib * B::MB, mb = std::min<int64_t>(B::MB, n - a0);
      for (int64_t b0 = 0; b0 < a0; b0 += TB) {
        const int64_t b1 = std::min<int64_t>(b0 + TB, a0);
        for (int64_t a = a0; a < a0 + mb; ++a) {
          T* dst = out + a * m;
          for (int64_t b = b0; b < b1; ++b) dst[b] = out[b * m + a];
        }
      }
    }
  }
}

template <class T>
inline void value_tile(const T* tile, int64_t mbp, int64_t nb, const T* Vp, int64_t nrows,
                       int64_t j0, int64_t tp, T* C) {
  constexpr int NR = VT<T>::NR;
  for (int64_t p = 0; p < tp / NR; ++p) {
    const T* Bp = Vp + (p * nrows + j0) * NR;
    for (int64_t i = 0; i < mbp; i += MR)
      ukernel<T, false>(nb, tile + i * Blocks<T>::LD, Blocks<T>::LD, Bp, C + i * tp + p * NR, tp,
                        true);
  }
}

template <class T>
void kernel_matmul(const T* Xt, const T* xn, int64_t n, const T* Zp, const T* zn, int64_t m,
                   int64_t r, int kind, double bandwidth, const Exact<T>& ex, const T* Vp,
                   const T* Vt, int64_t t, T* out, int nthreads) {
  typedef Blocks<T> B;
  constexpr int W = VT<T>::W;
  const bool small = Vp == nullptr;
  const int64_t tp = small ? t : round_up<T>(t, B::NR);
  auto make = [&] { return std::vector<T>(B::MB * tp); };  // C: the block's rows of K V
  auto cols = [&](int64_t, int64_t) { return std::pair<int64_t, int64_t>(0, m); };
  auto begin = [](std::vector<T>& C, int64_t, int64_t) { std::fill(C.begin(), C.end(), T(0)); };
  auto step = [=](std::vector<T>& C, int64_t i0, int64_t mb, int64_t mbp, int64_t j0, int64_t nb,
                  int64_t nbp, T* tile, int64_t ld, const T* znb) {
    for (int64_t i = 0; i < mb; ++i) {
      const RowCtx<T> ctx{&ex, ex.X + (i0 + i) * ex.d, j0, nb, nullptr};
      epilogue_row<T>(tile + i * ld, nbp, xn[i0 + i], znb, kind, T(bandwidth), false, T(0), ctx);
    }
    if (small) {  // t <= 4: vectorized row dot products
      for (int64_t i = 0; i < mb; ++i) {
        const T* row = tile + i * ld;
        for (int64_t c = 0; c < t; ++c) {
          const T* v = Vt + c * m + j0;
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
      value_tile(tile, mbp, nb, Vp, m, j0, tp, C.data());
    }
  };
  auto end = [=](std::vector<T>& C, int64_t i0, int64_t mb) {
    for (int64_t i = 0; i < mb; ++i)
      std::memcpy(out + (i0 + i) * t, C.data() + i * tp, sizeof(T) * t);
  };
  for_each_tile<T>(Xt, n, r, Zp, zn, kind == L1_LAPLACE, nthreads, make, cols, begin, step, end);
}

template <class T>
struct GradState {
  std::vector<T> C;  // the block's rows of A V
  std::vector<T> D;  // the block's direct terms sum_j w alpha_jc (q - x_j) of resolved pairs
  std::vector<std::pair<int64_t, T>> resolved;
};

template <class T>
void kernel_grads(const T* Qt, const T* qn, const T* Q, int64_t q, const T* Xp, const T* xn,
                  const T* alpha, int64_t n, int64_t r, int64_t d, int64_t c, int kind,
                  double bandwidth, double scale, double eps, const Exact<T>& ex, const T* Vp,
                  T* H, int nthreads) {
  typedef Blocks<T> B;
  const int64_t w = c * d + c, wp = round_up<T>(w, B::NR);
  const T s = T(scale);
  auto make = [&] { return GradState<T>{std::vector<T>(B::MB * wp), std::vector<T>(B::MB * c * d), {}}; };
  auto cols = [&](int64_t, int64_t) { return std::pair<int64_t, int64_t>(0, n); };
  auto begin = [](GradState<T>& st, int64_t, int64_t) {
    std::fill(st.C.begin(), st.C.end(), T(0));
    std::fill(st.D.begin(), st.D.end(), T(0));
  };
  auto step = [=](GradState<T>& st, int64_t i0, int64_t mb, int64_t mbp, int64_t j0, int64_t nb,
                  int64_t nbp, T* tile, int64_t ld, const T* znb) {
    for (int64_t i = 0; i < mb; ++i) {
      st.resolved.clear();
      const T* qi = ex.X + (i0 + i) * d;  // original rows: exact differences
      const RowCtx<T> ctx{&ex, qi, j0, nb, &st.resolved};
      epilogue_row<T>(tile + i * ld, nbp, qn[i0 + i], znb, kind, T(bandwidth), true, T(eps), ctx);
      T* di = st.D.data() + i * c * d;
      for (const auto& [j, wt] : st.resolved) {
        const T* xj = ex.Z + j * d;
        for (int64_t cc = 0; cc < c; ++cc) {
          const T f = wt * alpha[j * c + cc];
          for (int64_t k = 0; k < d; ++k) di[cc * d + k] += f * (qi[k] - xj[k]);
        }
      }
    }
    // rows mb..mbp of the tile hold the padded (zero) queries' weights: harmless, unused
    value_tile(tile, mbp, nb, Vp, n, j0, wp, st.C.data());
  };
  auto end = [=](GradState<T>& st, int64_t i0, int64_t mb) {
    for (int64_t i = 0; i < mb; ++i) {
      const T* ci = st.C.data() + i * wp;
      const T* di = st.D.data() + i * c * d;
      const T* qi = Q + (i0 + i) * d;
      T* hi = H + (i0 + i) * c * d;
      for (int64_t cc = 0; cc < c; ++cc) {
        const T a = ci[c * d + cc];  // (A alpha_c)_i
        for (int64_t k = 0; k < d; ++k)
          hi[cc * d + k] = s * ((a * qi[k] - ci[cc * d + k]) + di[cc * d + k]);
      }
    }
  };
  for_each_tile<T>(Qt, q, r, Xp, xn, false, nthreads, make, cols, begin, step, end);
}

template <class T>
void l1_grads(const T* Qt, int64_t q, const T* Xt, const T* Xp, int64_t n, int64_t r,
              const T* alpha, int64_t c, double bandwidth, double scale, T* H, int nthreads) {
  const T s = T(scale);
  auto make = [&] { return std::vector<T>(r); };  // the signs of one (query, point) pair
  auto cols = [&](int64_t, int64_t) { return std::pair<int64_t, int64_t>(0, n); };
  auto begin = [=](std::vector<T>&, int64_t i0, int64_t mb) {
    std::fill(H + i0 * c * r, H + (i0 + mb) * c * r, T(0));
  };
  auto step = [=](std::vector<T>& sgv, int64_t i0, int64_t mb, int64_t, int64_t j0, int64_t nb,
                  int64_t nbp, T* tile, int64_t ld, const T* zero) {
    // locals, not the closure's members: stores to H could otherwise alias the float scale
    const T s_ = s;
    const int64_t r_ = r, c_ = c;
    T* const sg = sgv.data();
    for (int64_t i = 0; i < mb; ++i) {
      T* row = tile + i * ld;
      epilogue_row<T>(row, nbp, T(0), zero, L1_LAPLACE, T(bandwidth), false, T(0),
                      RowCtx<T>{nullptr, nullptr, 0, 0, nullptr});
      const T* u = Qt + (i0 + i) * r_;
      T* hi = H + (i0 + i) * c_ * r_;
      for (int64_t j = 0; j < nb; ++j) {
        const T* x = Xt + (j0 + j) * r_;
        for (int64_t k = 0; k < r_; ++k) {
          const T diff = u[k] - x[k];
          sg[k] = T((diff > 0) - (diff < 0));
        }
        for (int64_t cc = 0; cc < c_; ++cc) {
          const T wv = s_ * alpha[(j0 + j) * c_ + cc] * row[j];
#pragma omp simd
          for (int64_t k = 0; k < r_; ++k) hi[cc * r_ + k] += wv * sg[k];
        }
      }
    }
  };
  auto none = [](std::vector<T>&, int64_t, int64_t) {};
  // no norms (zn = nullptr): the l1 epilogue reads a zero buffer
  for_each_tile<T>(Qt, q, r, Xp, nullptr, true, nthreads, make, cols, begin, step, none);
}

#include "cholesky_impl.h"

template <class T>
Ops<T> make_ops() {
  Ops<T> o;
#if defined(__AVX512F__)
  o.isa = "avx512";
#elif defined(__AVX2__)
  o.isa = "avx2";
#else
  o.isa = "generic";
#endif
  o.nr = VT<T>::NR;
  o.prepare = &prepare<T>;
  o.packed_size = &packed_size<T>;
  o.pack_points = &pack_points<T>;
  o.pack_values = &pack_values<T>;
  o.pack_grad_values = &pack_grad_values<T>;
  o.kernel_matrix = &kernel_matrix<T>;
  o.kernel_matmul = &kernel_matmul<T>;
  o.kernel_grads = &kernel_grads<T>;
  o.l1_grads = &l1_grads<T>;
  o.gemm_nt = &gemm_nt<T>;
  o.cholesky = &cholesky<T>;
  return o;
}

}  // namespace RFMFAST_VARIANT

// The variant's table, looked up by dispatch.cpp.
template <>
Ops<float> variant_ops<float, variant_tag::RFMFAST_VARIANT>() {
  return RFMFAST_VARIANT::make_ops<float>();
}
template <>
Ops<double> variant_ops<double, variant_tag::RFMFAST_VARIANT>() {
  return RFMFAST_VARIANT::make_ops<double>();
}

}  // namespace rfmfast
