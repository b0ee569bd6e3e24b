// Packing: the operand layouts the micro-kernel reads, B panels [k][NR] and A panels [k][MR].
//
// B panels are zero padded to NR columns: packed points (the distance GEMM's B, one panel per
// NR points), packed values (the value GEMM's B, one panel per NR value columns) and the
// Cholesky's GEMM operand. A panels [k][MR], zero padded to MR rows, are the Cholesky's left
// operand; the kernel ops read their A operands as rows (a copied block of query rows, the
// epilogue's tile).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "parallel.h"
#include "simd.h"

namespace rfmfast {
namespace RFMFAST_VARIANT {

// Elements of the panels holding a (rows x cols) operand, cols rounded up to NR.
template <class T>
int64_t packed_size(int64_t rows, int64_t cols) {
  constexpr int NR = VT<T>::NR;
  return ((cols + NR - 1) / NR) * NR * std::max<int64_t>(rows, 1);
}

// rows [0, rows <= NR) x depth [0, kc) of B (row-major, ldb) -> one [kc][NR] panel (zero
// padded): the B operand of every NT register-tile GEMM (distance tiles, the Cholesky's gemm_nt)
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

// rows [0, m) x depth [0, kc) of A (row-major, lda) -> [m/MR][kc][MR] (zero padded rows): the
// A operand of a run of register tiles, panel i0 / MR at out + i0 * kc
template <class T>
inline void pack_a(const T* A, int64_t lda, int64_t m, int64_t kc, T* out) {
  for (int64_t i0 = 0; i0 < m; i0 += MR) {
    T* dst = out + i0 * kc;
    const int rows = int(std::min<int64_t>(MR, m - i0));
    for (int i = 0; i < rows; ++i) {
      const T* src = A + (i0 + i) * lda;
      for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = src[k];
    }
    for (int i = rows; i < MR; ++i)
      for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = T(0);
  }
}

// rows [0, m) of A (m x k, row-major) -> out (rows x k), zero padded to rows >= m: a block of
// query rows, the A operand of the distance GEMM (read in place, row by row)
template <class T>
inline void copy_rows(const T* A, int64_t m, int64_t k, int64_t rows, T* out) {
  std::memcpy(out, A, sizeof(T) * m * k);
  std::memset(out + m * k, 0, sizeof(T) * (rows - m) * k);
}

// points P (n x r) -> [panel][k][NR]: panel p holds points p*NR .. p*NR+NR-1 (zero padded)
template <class T>
void pack_points(const T* P, int64_t n, int64_t r, T* out, int nthreads) {
  constexpr int NR = VT<T>::NR;
  const int64_t panels = (n + NR - 1) / NR;
  nthreads = threads_for(nthreads, 8.0 * double(n) * double(r));
  parallel_for(panels, nthreads, chunk_for(panels, nthreads), [&](int64_t p) {
    pack_b_panel(P + p * NR * r, r, std::min<int64_t>(NR, n - p * NR), r, out + p * r * NR);
  });
}

// Rows i < n of a value matrix with w columns -> [panel][i][NR]: panel p holds columns
// p*NR .. p*NR+NR-1 (zero padded). The one packer of value matrices, whatever computes their
// entries: row(i)(col0, cols, dst) writes columns col0 .. col0+cols-1 of row i to dst.
template <class T, class Row>
void pack_value_panels(int64_t n, int64_t w, Row row, T* out, int nthreads) {
  constexpr int NR = VT<T>::NR;
  const int64_t panels = (w + NR - 1) / NR;
  nthreads = threads_for(nthreads, 8.0 * double(n) * double(w));
  parallel_for(n, nthreads, chunk_for(n, nthreads), [&](int64_t i) {
    const auto fill = row(i);
    for (int64_t p = 0; p < panels; ++p) {
      T* dst = out + (p * n + i) * NR;
      const int64_t col0 = p * NR, cols = std::min<int64_t>(NR, w - col0);
      fill(col0, cols, dst);
      for (int64_t j = cols; j < NR; ++j) dst[j] = T(0);
    }
  });
}

// values V (n x w)
template <class T>
void pack_values(const T* V, int64_t n, int64_t w, T* out, int nthreads) {
  auto row = [=](int64_t i) {
    const T* v = V + i * w;
    return
        [=](int64_t col0, int64_t cols, T* dst) { std::memcpy(dst, v + col0, sizeof(T) * cols); };
  };
  pack_value_panels<T>(n, w, row, out, nthreads);
}

// [alpha_1 X | ... | alpha_c X | alpha] (n x w, w = c d + c) from X (n x d) and alpha (n x c):
// the unpacked matrix never exists.
template <class T>
void pack_grad_values(const T* X, const T* alpha, int64_t n, int64_t d, int64_t c, T* out,
                      int nthreads) {
  const int64_t cd = c * d;
  auto row = [=](int64_t i) {
    const T* x = X + i * d;
    const T* a = alpha + i * c;
    return [=](int64_t col0, int64_t cols, T* dst) {
      int64_t cc = col0 / d, k = col0 % d;  // column col = cc * d + k, while col < c d
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t col = col0 + j;
        if (col < cd) {
          dst[j] = a[cc] * x[k];
          if (++k == d) k = 0, ++cc;
        } else {
          dst[j] = a[col - cd];
        }
      }
    };
  };
  pack_value_panels<T>(n, cd + c, row, out, nthreads);
}

}  // namespace RFMFAST_VARIANT
}  // namespace rfmfast
