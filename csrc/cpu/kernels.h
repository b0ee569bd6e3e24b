// The table of one instruction-set variant's kernels (Ops), and the run-time choice of variant.
//
// Each op's arguments and meaning are in params.h; the table is filled by variant.h (once per
// instruction set) and looked up by dispatch.cpp.
#pragma once
#include <chrono>
#include <cstdint>

#include "params.h"

namespace rfmfast {

// Ctrl-C: the bindings set poll_interrupt to a function that runs Python's signal handlers
// (on the main thread only) and returns true when one raised. Long kernels call it from the
// calling thread, at most every POLL_INTERVAL, and then throw Interrupted, which the bindings
// turn back into the pending Python exception (KeyboardInterrupt).
extern bool (*poll_interrupt)();
struct Interrupted {};
constexpr std::chrono::milliseconds POLL_INTERVAL{20};

// true when a poll is due (last: the time of the previous one, updated) and it saw a Ctrl-C
inline bool interrupt_pending(std::chrono::steady_clock::time_point& last) {
  if (poll_interrupt == nullptr) return false;
  const auto now = std::chrono::steady_clock::now();
  if (now - last <= POLL_INTERVAL) return false;
  last = now;
  return poll_interrupt();
}

template <class T>
struct Ops {
  const char* isa;
  void (*prepare)(const PrepareParams<T>& p);
  // elements of the panels holding a (rows x cols) operand
  int64_t (*packed_size)(int64_t rows, int64_t cols);
  // points (n x r) -> panels [n/NR][r][NR]   (the B operand of the distance GEMM)
  void (*pack_points)(const T* P, int64_t n, int64_t r, T* out, int nthreads);
  // values (n x w) -> panels [w/NR][n][NR]   (the B operand of the value GEMM)
  void (*pack_values)(const T* V, int64_t n, int64_t w, T* out, int nthreads);
  // [alpha_1 X | ... | alpha_c X | alpha] (n x (c d + c)) packed as pack_values would, without
  // forming the unpacked matrix (the AGOP's memory holds it once).
  void (*pack_grad_values)(const T* X, const T* alpha, int64_t n, int64_t d, int64_t c, T* out,
                           int nthreads);
  void (*kernel_matrix)(const KernelMatrixParams<T>& p);
  void (*kernel_matmul)(const KernelMatmulParams<T>& p);
  void (*nystroem_matmul)(const NystroemMatmulParams<T>& p);
  void (*kernel_grads)(const KernelGradsParams<T>& p);
  void (*l1_grads)(const L1GradsParams<T>& p);
  // C (m x n) -= A (m x k) B (n x k)^T, each with its leading dimension; lower: C is square and
  // only the tiles reaching its lower triangle are updated.
  void (*gemm_nt)(int64_t m, int64_t n, int64_t k, const T* A, int64_t lda, const T* B, int64_t ldb,
                  T* C, int64_t ldc, bool lower, int nthreads);
  // A (n x n, leading dimension lda) = L L^T in place, L in the lower triangle; the upper
  // triangle is not read. Returns 0, or j + 1 where pivot j was not positive (A then partly
  // overwritten).
  int64_t (*cholesky)(T* A, int64_t n, int64_t lda, int nthreads);
  void (*dual_recursion)(const DualParams<T>& p);
};

namespace variant_tag {
struct generic;
struct avx2;
struct avx512;
}  // namespace variant_tag

// Each compiled variant defines these two specializations (variant.h).
template <class T, class Tag>
Ops<T> variant_ops();

template <class T>
const Ops<T>& ops();             // the variant in use (dispatch.cpp)
const char* cpu_features();      // what the CPU offers, as a string
const char* isa();               // the variant in use: "avx512", "avx2" or "generic"
const char* available_isas();    // the variants this CPU can run, comma separated
void set_isa(const char* name);  // choose a variant (throws std::invalid_argument)

}  // namespace rfmfast
