// The micro-kernel: one MR x NR register tile of C from an A operand and a packed B panel.
//
//   C[i][0:NR] (=, +=, -=) sum_k op(A(i, k), Bp[k*NR + 0:NR])      for i < MR
//
// op is a product (fused multiply-add where the ISA has it) or, for l1 distances, |a - b|. Every
// GEMM in the kernels runs on it: the distance tiles, the value GEMM after the epilogue, and the
// Cholesky's gemm_nt.
#pragma once
#include <cstdint>

#include "simd.h"

namespace rfmfast {
namespace RFMFAST_VARIANT {

// The A operand of a tile, read as a(i, k): rows of a row-major matrix (leading dimension ld),
// or an A panel [k][MR] made by pack_a.
template <class T>
struct RowsA {
  const T* p;
  int64_t ld;
  T operator()(int i, int64_t k) const { return p[i * ld + k]; }
};
template <class T>
struct PanelA {
  const T* p;
  T operator()(int i, int64_t k) const { return p[k * MR + i]; }
};

enum class Acc { dot, l1 };        // what is summed over k: a * b, or |a - b|
enum class Out { set, add, sub };  // C = sum; C = C + sum (summed onto C); C = C - sum

// mr x nr (<= MR x NR): the part of the tile that Out::sub writes back (a partial tile at C's
// edges, in the Cholesky's GEMM). The kernel ops' tiles are padded and always written whole.
// Always inlined: called as a function, its MR x NV accumulators and the loop around it cost
// 10-25% of a kernel op (GCC stopped inlining it on its own once the tile loop moved into a
// lambda, parallel.h).
template <class T, Acc acc_op, Out out, class A>
inline __attribute__((always_inline)) void microkernel(int64_t K, A a, const T* __restrict Bp, T* C,
                                                       int64_t ldc, int mr = MR,
                                                       int nr = VT<T>::NR) {
  constexpr int W = VT<T>::W, NR = VT<T>::NR;
  const bool whole = mr == MR && nr == NR;
  vec<T> acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = out == Out::add ? load(C + i * ldc + v * W) : vec<T>{};
  for (int64_t k = 0; k < K; ++k) {
    vec<T> b[NV];
    for (int v = 0; v < NV; ++v) b[v] = load(Bp + k * NR + v * W);
    for (int i = 0; i < MR; ++i) {
      const vec<T> ai = bcast<T>(a(i, k));
      for (int v = 0; v < NV; ++v) {
        if constexpr (acc_op == Acc::l1) {
          vec<T> diff = ai - b[v];
          acc[i][v] += diff < T(0) ? -diff : diff;
        } else {
          acc[i][v] = vfma(ai, b[v], acc[i][v]);
        }
      }
    }
  }
  if (out != Out::sub || whole) {
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) {
        T* c = C + i * ldc + v * W;
        store(c, out == Out::sub ? load(c) - acc[i][v] : acc[i][v]);
      }
  } else {
    alignas(64) T tmp[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) store(&tmp[i][v * W], acc[i][v]);
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < nr; ++j) C[i * ldc + j] -= tmp[i][j];
  }
}

}  // namespace RFMFAST_VARIANT
}  // namespace rfmfast
