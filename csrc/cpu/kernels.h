// rfmfast CPU kernels: the interface shared by every instruction-set variant.
//
// Every array is row-major and contiguous. "Packed points" and "packed values" are the panel
// layouts made by pack_points / pack_values of the *same* variant (panels of NR columns, zero
// padded), so a variant's packed buffers are only ever read by that variant.
#pragma once
#include <cstdint>

namespace rfmfast {

enum Kind : int { LAPLACE = 0, GAUSSIAN = 1, L1_LAPLACE = 2 };
enum Fill : int { FILL_FULL = 0, FILL_SYMMETRIC = 1, FILL_LOWER = 2 };

// Ctrl-C: the bindings set poll_interrupt to a function that runs Python's signal handlers
// (on the main thread only) and returns true when one raised. Long kernels call it from the
// calling thread between row blocks (at most every few tens of ms) and then throw Interrupted,
// which the bindings turn back into the pending Python exception (KeyboardInterrupt).
extern bool (*poll_interrupt)();
struct Interrupted {};

// Distances (rfmfast/kernels.py, "the distance rule"): the callers center both point sets at
// the centers' mean before mapping them, and a pair whose GEMM squared distance
// |x|^2 + |z|^2 - 2 x.z is at most `resolve` (|x|^2 + |z|^2) is recomputed by differences,
// || S (x - z) ||^2 on the original coordinates (0 for identical rows): exact small distances
// (near-duplicates, self-pairs) whatever the points' norms or offset.
template <class T>
struct Exact {
  const T* X;      // the queries' original rows (n x d)
  const T* Z;      // the centers' original rows (m x d)
  const T* S;      // M's factor: null (identity), (d) diagonal or (r x d), as s_mode 0 / 1 / 2
  int s_mode;
  int64_t d, r;    // original and mapped dimensions
  double resolve;  // the ratio of the rule
};

template <class T>
struct Ops {
  const char* isa;
  int nr;  // panel width (columns per panel) of the packed layouts
  // Xt = (X - mu) S^T (S: r x d, s_mode 2), (X - mu) * s (s: d, s_mode 1) or X - mu (s_mode 0;
  // mu (d) may be null: no translation), and the squared row norms ||Xt_i||^2, summed in wider
  // arithmetic and rounded once.
  void (*prepare)(const T* X, int64_t n, int64_t d, const T* mu, const T* S, int s_mode,
                  int64_t r, T* Xt, T* norms, int nthreads);
  int64_t (*packed_size)(int64_t rows, int64_t cols);
  // points (n x r) -> panels [n/NR][r][NR]   (the B operand of the distance GEMM)
  void (*pack_points)(const T* P, int64_t n, int64_t r, T* out);
  // values (n x w) -> panels [w/NR][n][NR]   (the B operand of the value GEMM)
  void (*pack_values)(const T* V, int64_t n, int64_t w, T* out);
  // out (n x m) = K(X, Z); Zp = pack_points(Zt). fill: FILL_FULL; FILL_SYMMETRIC (Z is X: one
  // triangle computed and mirrored); FILL_LOWER (Z is X: every entry j <= i written, the strictly
  // upper ones only within diagonal blocks; for a solver that reads the lower triangle).
  void (*kernel_matrix)(const T* Xt, const T* xn, int64_t n, const T* Zp, const T* zn, int64_t m,
                        int64_t r, int kind, double bandwidth, const Exact<T>& ex, int fill,
                        T* out, int nthreads);
  // out (n x t) = K(X, Z) V. Either Vp = pack_values(V) (t > 4) or Vt = V^T (t x m, t <= 4).
  void (*kernel_matmul)(const T* Xt, const T* xn, int64_t n, const T* Zp, const T* zn, int64_t m,
                        int64_t r, int kind, double bandwidth, const Exact<T>& ex, const T* Vp,
                        const T* Vt, int64_t t, T* out, int nthreads);
  // H (q x c x d), H_c = s [ (A alpha_c) * Q - A (alpha_c * X) ] with the weight tile
  // A = K/D (laplace, masked below eps) or K (gaussian), 0 for coincident pairs; Q and X
  // centered (the same translation); Vp = pack_grad_values(X - mu, alpha). Pairs resolved by
  // differences leave the tile and add w alpha_jc (q - x_j) directly on the original rows
  // ex.X = Q, ex.Z = X (no cancellation).
  void (*kernel_grads)(const T* Qt, const T* qn, const T* Q, int64_t q, const T* Xp, const T* xn,
                       const T* alpha, int64_t n, int64_t r, int64_t d, int64_t c, int kind,
                       double bandwidth, double scale, double eps, const Exact<T>& ex,
                       const T* Vp, T* H, int nthreads);
  // [alpha_1 X | ... | alpha_c X | alpha] (n x (c d + c)) packed as pack_values would, without
  // forming the unpacked matrix (the AGOP's memory holds it once).
  void (*pack_grad_values)(const T* X, const T* alpha, int64_t n, int64_t d, int64_t c, T* out);
  // l1_laplace: h (q x c x r), h_c = s sum_j alpha_jc K_ij sign(Qt_i - Xt_j).
  void (*l1_grads)(const T* Qt, int64_t q, const T* Xt, const T* Xp, int64_t n, int64_t r,
                   const T* alpha, int64_t c, double bandwidth, double scale, T* H, int nthreads);
  // C (m x n) -= A (m x k) B (n x k)^T, each with its leading dimension; lower: C is square and
  // only the tiles reaching its lower triangle are updated.
  void (*gemm_nt)(int64_t m, int64_t n, int64_t k, const T* A, int64_t lda, const T* B,
                  int64_t ldb, T* C, int64_t ldc, bool lower, int nthreads);
  // A (n x n, leading dimension lda) = L L^T in place, L in the lower triangle; the upper
  // triangle is not read. Returns 0, or j + 1 where pivot j was not positive (A then partly
  // overwritten).
  int64_t (*cholesky)(T* A, int64_t n, int64_t lda, int nthreads);
};

namespace variant_tag {
struct generic;
struct avx2;
struct avx512;
}  // namespace variant_tag

// Each compiled variant defines these two specializations (kernels_impl.h).
template <class T, class Tag>
Ops<T> variant_ops();

template <class T>
const Ops<T>& ops();             // the variant in use (dispatch.cpp)
const char* cpu_features();      // what the CPU offers, as a string
const char* isa();               // the variant in use: "avx512", "avx2" or "generic"
const char* available_isas();    // the variants this CPU can run, comma separated
void set_isa(const char* name);  // choose a variant (throws std::invalid_argument)

}  // namespace rfmfast
