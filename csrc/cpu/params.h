// The arguments of the ops: kernel codes, fill modes, thresholds, one params struct per op.
//
// bindings.cpp fills a struct from a Python call's arguments and hands it down through the
// variant's table (kernels.h) to the op, whose tile driver and epilogue read it. Every array is
// row-major and contiguous. "Packed" buffers are the panel layouts of pack.h made by the *same*
// variant (panels of NR columns, zero padded), so they are only ever read by that variant.
#pragma once
#include <cstdint>

namespace rfmfast {

// The kernel codes, shared with Python (rfmfast/kernels.py) through _C.kernel_codes().
enum Kind : int { LAPLACE = 0, GAUSSIAN = 1, L1_LAPLACE = 2, NUM_KINDS = 3 };
constexpr const char* KIND_NAMES[NUM_KINDS] = {"laplace", "gaussian", "l1_laplace"};

// What kernel_matrix writes: every entry; Z is X and one triangle is computed and mirrored; Z is
// X and every entry j <= i is written, the strictly upper ones only within diagonal blocks (for
// a solver that reads the lower triangle).
enum Fill : int { FILL_FULL = 0, FILL_SYMMETRIC = 1, FILL_LOWER = 2 };

// kernel_matmul with at most SMALL_T value columns takes V^T and row dot products; with more, a
// packed V and the value GEMM.
constexpr int64_t SMALL_T = 4;
// FILL_SYMMETRIC computes one triangle and mirrors it from this mapped dimension on, where the
// distance GEMM dominates; below it the full product costs less than the transpose's traffic.
constexpr int64_t SYMMETRIC_MIN_R = 96;

// Distances (rfmfast/kernels.py, "the distance rule"): the callers center both point sets at
// the centers' mean before mapping them, and a pair whose GEMM squared distance
// |x|^2 + |z|^2 - 2 x.z is at most `resolve` (|x|^2 + |z|^2) is recomputed by differences,
// || S (x - z) ||^2 on the original coordinates (0 for identical rows): exact small distances
// (near-duplicates, self-pairs) whatever the points' norms or offset.
template <class T>
struct Exact {
  const T* X;  // the queries' original rows (n x d)
  const T* Z;  // the centers' original rows (m x d)
  const T* S;  // M's factor: null (identity), (d) diagonal or (r x d), as s_mode 0 / 1 / 2
  int s_mode;
  int64_t d, r;    // original and mapped dimensions
  double resolve;  // the ratio of the rule
};

// xt = (x - mu) S^T (s_mode 2), (x - mu) * s (s_mode 1) or x - mu (s_mode 0; mu may be null: no
// translation), and the squared row norms ||xt_i||^2, summed in wider arithmetic, rounded once.
template <class T>
struct PrepareParams {
  const T* x;  // points (n x d)
  int64_t n, d;
  const T* mu;  // translation (d), or null
  const T* s;   // M's factor as in Exact::S
  int s_mode;
  int64_t r;  // mapped dimension: d, or S's rows
  T* xt;      // out: mapped points (n x r)
  T* norms;   // out: their squared norms (n)
  int nthreads;
};

// What every kernel op reads: the queries and the centers, mapped by prepare (the centers then
// packed by pack_points), the kernel, and the distance rule's exact path.
template <class T>
struct DistanceParams {
  const T* xt;  // queries, mapped (n x r)
  const T* xn;  // their squared norms (n); unused by l1 distances
  int64_t n;
  const T* zp;  // centers, mapped and packed (m x r)
  const T* zn;  // their squared norms (m); null: none (l1 distances)
  int64_t m;
  int64_t r;  // mapped dimension
  Kind kind;
  double bandwidth;
  Exact<T> ex;  // unused by l1_grads
  int nthreads;
};

// out (n x m) = K(X, Z), as `fill` says.
template <class T>
struct KernelMatrixParams : DistanceParams<T> {
  Fill fill;
  T* out;
};

// out (n x t) = K(X, Z) V: either vp = pack_values(V) (t > SMALL_T) or vt = V^T (t x m,
// t <= SMALL_T), the other null.
template <class T>
struct KernelMatmulParams : DistanceParams<T> {
  const T* vp;
  const T* vt;
  int64_t t;
  T* out;
};

// out (m x t) = K(C, X) (K(X, C) V + W): the queries X and the centers C of DistanceParams, V
// as in KernelMatmulParams, w (n x t) or null (W = 0).
template <class T>
struct NystroemMatmulParams : DistanceParams<T> {
  const T* vp;
  const T* vt;
  int64_t t;
  const T* w;
  T* out;
};

// H (n x c x d), H_c = s [ (A alpha_c) * Q - A (alpha_c * X) ] for the queries Q and the centers
// X, both centered (the same translation), with the weight tile A = K/D (laplace, masked below
// eps) or K (gaussian), 0 for coincident pairs. Pairs resolved by differences leave the tile
// and add w alpha_jc (q - x_j) directly on the original rows ex.X = Q, ex.Z = X (no
// cancellation).
template <class T>
struct KernelGradsParams : DistanceParams<T> {
  const T* q;      // the queries' centered original rows (n x d)
  const T* alpha;  // (m x c)
  int64_t d, c;
  double scale, eps;
  const T* vp;  // pack_grad_values(X - mu, alpha)
  T* h;         // out (n x c x d)
};

// l1_laplace: h (n x c x r), h_c = s sum_j alpha_jc K_ij sign(xt_i - zt_j).
template <class T>
struct L1GradsParams : DistanceParams<T> {
  const T* zt;     // centers, mapped (m x r): the signs
  const T* alpha;  // (m x c)
  int64_t c;
  double scale;
  T* h;  // out (n x c x r)
};

// dual_kernel (dual_kernel.h): the activations, shared with Python (rfmfast/ops/dual_kernel/
// activations.py) through _C.dual_codes(). A polynomial psi is given by its coefficients.
enum DualAct : int { DUAL_POLY = 0, DUAL_RELU = 1, DUAL_ERF = 2, DUAL_SINE = 3 };
constexpr int DUAL_MAX_DEGREE = 64;

// The depth recursion of psi on rho = x.z, in place on out (count entries): NNGP (ntk = 0) or
// NTK (ntk = 1). coeffs[0..degree] for DUAL_POLY; param a for DUAL_SINE. inv_norm is not
// used (the normalizers are computed in T, dual_kernel.h); it stays for the binding's layout.
template <class T>
struct DualParams {
  T* out;
  int64_t count;
  int depth, act, ntk, degree;
  const T* coeffs;
  double param, inv_norm;
  int nthreads;
};

}  // namespace rfmfast
