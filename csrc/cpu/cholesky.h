// cholesky: A = L L^T in place (recursive, its flops in a blocked GEMM), and that GEMM, gemm_nt.
//
//   gemm_nt(C, A, B):  C (m x n) -= A (m x k) B (n x k)^T, every matrix row-major with its own
//                      leading dimension; lower = true updates only the tiles that touch C's
//                      lower triangle (SYRK on a diagonal block).
//   cholesky(A, n):    A = L L^T in place, L in the lower triangle (row-major); the strictly
//                      upper triangle is never read, and is left holding scratch values.
//
// The factorization is recursive (split the matrix in two, factor the leading block, one
// triangular solve for the panel, one SYRK for the trailing block, factor it), so nearly all of
// its n^3 / 3 multiply-adds run in gemm_nt on large blocks. gemm_nt packs A and B into
// register-tile panels (BLIS-style: KC-deep slices, B micro-panels reused from L1 across the A
// block in L2) and splits the row blocks of C over the threads. Rounding is that of any blocked
// BLAS: products accumulate in T, FMA where the ISA has it.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels.h"
#include "microkernel.h"
#include "pack.h"
#include "parallel.h"
#include "simd.h"

namespace rfmfast {
namespace RFMFAST_VARIANT {

// For the calling thread outside parallel regions (the recursion): poll for Ctrl-C at most
// every POLL_INTERVAL and throw Interrupted when it was pressed.
inline void check_interrupt() {
  thread_local auto last = std::chrono::steady_clock::now();
  if (interrupt_pending(last)) throw Interrupted{};
}

template <class T>
struct GemmBlocks {
  static constexpr int NR = VT<T>::NR;
  static constexpr int64_t KC = sizeof(T) == 4 ? 256 : 192;  // depth of a packed slice
  static constexpr int64_t MC = MR * 12;                     // rows of a packed A block
  static constexpr int64_t NC = NR * 128;                    // columns of a packed B block
};

// C (m x n) -= A (m x k) B (n x k)^T. lower: only tiles reaching C's lower triangle (C square).
template <class T>
void gemm_nt(int64_t m, int64_t n, int64_t k, const T* A, int64_t lda, const T* B, int64_t ldb,
             T* C, int64_t ldc, bool lower, int nthreads) {
  typedef GemmBlocks<T> G;
  constexpr int NR = VT<T>::NR;
  if (m <= 0 || n <= 0 || k <= 0) return;
  const int64_t kc_max = std::min<int64_t>(k, G::KC);
  const int64_t nc_max = std::min<int64_t>(round_up(n, NR), G::NC);
  std::vector<T> Bp(nc_max * kc_max);
  // row blocks: MC, or smaller so that every thread gets a few (dynamic scheduling balances
  // the triangular case)
  int64_t mc = std::min<int64_t>(G::MC, round_up((m + 4 * nthreads - 1) / (4 * nthreads), MR));
  mc = std::max<int64_t>(mc, MR);
  const int64_t mblocks = (m + mc - 1) / mc;
  const double work = double(m) * double(n) * double(k) * (lower ? 0.5 : 1.0);
  const int nt = threads_for(int(std::min<int64_t>(nthreads, mblocks)), work);
  const int64_t ap_size = round_up(mc, MR) * kc_max;
  std::vector<T> Aps(nt * ap_size);  // each thread's packed A block
  for (int64_t jc = 0; jc < n; jc += G::NC) {
    const int64_t nc = std::min<int64_t>(G::NC, n - jc);
    if (lower && jc > m - 1) break;
    for (int64_t pc = 0; pc < k; pc += G::KC) {
      const int64_t kc = std::min<int64_t>(G::KC, k - pc);
      const int64_t panels = (nc + NR - 1) / NR;
      const int pt = threads_for(nt, 8.0 * double(nc) * double(kc));
      parallel_for(panels, pt, chunk_for(panels, pt), [&](int64_t p) {
        const int64_t j0 = jc + p * NR;
        pack_b_panel(B + j0 * ldb + pc, ldb, std::min<int64_t>(NR, n - j0), kc,
                     Bp.data() + p * kc * NR);
      });
      // (Bp is ready)
      parallel_for(
          mblocks, nt, 1, [&](int tid) { return Aps.data() + tid * ap_size; },
          [&](T* Ap, int64_t bi) {
            const int64_t ic = bi * mc, mb = std::min<int64_t>(mc, m - ic);
            if (lower && ic + mb - 1 < jc) return;  // block entirely above the diagonal
            pack_a(A + ic * lda + pc, lda, mb, kc, Ap);
            for (int64_t p = 0; p < panels; ++p) {
              const int64_t j0 = jc + p * NR;
              if (lower && j0 > ic + mb - 1) break;
              const int nr = int(std::min<int64_t>(NR, n - j0));
              const T* bp = Bp.data() + p * kc * NR;
              for (int64_t ir = 0; ir < mb; ir += MR) {
                const int64_t i0 = ic + ir;
                if (lower && j0 > i0 + MR - 1) continue;  // micro-tile above the diagonal
                microkernel<T, Acc::dot, Out::sub>(kc, PanelA<T>{Ap + ir * kc}, bp,
                                                   C + i0 * ldc + j0, ldc,
                                                   int(std::min<int64_t>(MR, m - i0)), nr);
              }
            }
          });
      // (Bp may be overwritten)
    }
  }
}

// Unblocked Cholesky of a small diagonal block (n <= a few dozen): returns 0, or j + 1 for the
// first non-positive (or NaN) pivot j. Dot products accumulate in double.
template <class T>
int64_t cholesky_base(T* A, int64_t n, int64_t lda) {
  for (int64_t j = 0; j < n; ++j) {
    T* rj = A + j * lda;
    double d = rj[j];
    for (int64_t p = 0; p < j; ++p) d -= double(rj[p]) * rj[p];
    if (!(d > 0.0)) return j + 1;
    const double ljj = std::sqrt(d);
    rj[j] = T(ljj);
    for (int64_t i = j + 1; i < n; ++i) {
      T* ri = A + i * lda;
      double s = ri[j];
      for (int64_t p = 0; p < j; ++p) s -= double(ri[p]) * rj[p];
      ri[j] = T(s / ljj);
    }
  }
  return 0;
}

// X L^T = B for X (m x k), in place of B; L (k x k) lower, k small. W rows at a time are turned
// into [k][W] lane vectors, so the substitution runs on whole vectors.
template <class T>
void trsm_base(T* B, int64_t m, int64_t k, int64_t ldb, const T* L, int64_t ldl, int nthreads) {
  constexpr int W = VT<T>::W;
  const int64_t groups = (m + W - 1) / W;
  std::vector<T> inv(k);
  for (int64_t c = 0; c < k; ++c) inv[c] = T(1) / L[c * ldl + c];
  const int nt = threads_for(int(std::min<int64_t>(nthreads, std::max<int64_t>(groups / 4, 1))),
                             0.5 * double(m) * double(k) * double(k));
  std::vector<vec<T>> xs(nt * k);  // each thread's solved rows, [k] lane vectors
  parallel_for(
      groups, nt, chunk_for(groups, nt), [&](int tid) { return xs.data() + tid * k; },
      [&](vec<T>* x, int64_t g) {
        const int64_t i0 = g * W;
        const int rows = int(std::min<int64_t>(W, m - i0));
        for (int64_t c = 0; c < k; ++c) {
          vec<T> v{};
          for (int l = 0; l < rows; ++l) v[l] = B[(i0 + l) * ldb + c];
          const T* lc = L + c * ldl;
          for (int64_t p = 0; p < c; ++p) v = vfma(bcast<T>(-lc[p]), x[p], v);
          x[c] = v * inv[c];
        }
        for (int l = 0; l < rows; ++l)
          for (int64_t c = 0; c < k; ++c) B[(i0 + l) * ldb + c] = x[c][l];
      });
}

// a split point near the middle, on a multiple of 32 (whole register tiles in the GEMMs)
inline int64_t split_half(int64_t n) {
  int64_t h = (n / 2 + 31) / 32 * 32;
  return (h >= n) ? n / 2 : h;
}

constexpr int64_t CHOL_BASE = 48;
constexpr int64_t TRSM_BASE = 48;

template <class T>
void trsm_rec(T* B, int64_t m, int64_t k, int64_t ldb, const T* L, int64_t ldl, int nthreads) {
  if (k <= TRSM_BASE) {
    trsm_base(B, m, k, ldb, L, ldl, nthreads);
    return;
  }
  const int64_t k1 = split_half(k);
  trsm_rec(B, m, k1, ldb, L, ldl, nthreads);
  gemm_nt(m, k - k1, k1, B, ldb, L + k1 * ldl, ldl, B + k1, ldb, false, nthreads);
  trsm_rec(B + k1, m, k - k1, ldb, L + k1 * ldl + k1, ldl, nthreads);
}

template <class T>
int64_t cholesky(T* A, int64_t n, int64_t lda, int nthreads) {
  if (n <= CHOL_BASE) return cholesky_base(A, n, lda);
  const int64_t n1 = split_half(n), n2 = n - n1;
  if (int64_t f = cholesky(A, n1, lda, nthreads)) return f;
  T* A21 = A + n1 * lda;
  T* A22 = A21 + n1;
  check_interrupt();
  trsm_rec(A21, n2, n1, lda, A, lda, nthreads);
  check_interrupt();
  gemm_nt(n2, n2, n1, A21, lda, A21, lda, A22, lda, true, nthreads);
  check_interrupt();
  if (int64_t f = cholesky(A22, n2, lda, nthreads)) return f + n1;
  return 0;
}

}  // namespace RFMFAST_VARIANT
}  // namespace rfmfast
