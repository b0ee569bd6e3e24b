// The Python bindings (rfmfast._C): each call checks its arguments and fills its op's params.
//
// Arrays come in as numpy buffers (torch tensors are handed over with .numpy(), no copy);
// nothing here links against libtorch. The GIL is released while a kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "kernels.h"

namespace py = pybind11;
using rfmfast::ops;

namespace {

template <class T>
using arr = py::array_t<T, py::array::c_style>;

template <class T>
const T* ptr(const arr<T>& a) {
  return a.data();
}
// None -> null; else the array's data, `keep` holding the array (a converting cast makes a
// temporary copy, which must outlive the kernel)
template <class T>
const T* ptr_or_null(const py::object& o, arr<T>& keep) {
  if (o.is_none()) return nullptr;
  keep = o.cast<arr<T>>();
  return keep.data();
}
template <class T>
T* mptr(arr<T>& a) {
  return a.mutable_data();
}

void need(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

int threads(int nthreads) {
  need(nthreads >= 1, "nthreads must be >= 1, got " + std::to_string(nthreads));
  return nthreads;
}

// Ctrl-C (kernels.h): Python runs signal handlers only on the main thread, so only a kernel
// called from there polls; the handler's exception (KeyboardInterrupt) is raised on return.
thread_local bool polling = false;

bool poll_python_signals() {
  if (!polling) return false;
  py::gil_scoped_acquire gil;
  return PyErr_CheckSignals() != 0;
}

// Runs f with the GIL released; a Ctrl-C seen by the kernel raises the pending exception.
template <class F>
auto run(F f) {
  const bool main =
      PyThread_get_thread_ident() ==
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
  bool interrupted = false;
  decltype(f()) result{};
  {
    py::gil_scoped_release release;
    polling = main;
    try {
      result = f();
    } catch (const rfmfast::Interrupted&) {
      interrupted = true;
    }
    polling = false;
  }
  if (interrupted) {
    if (PyErr_Occurred()) throw py::error_already_set();
    throw py::value_error("interrupted");
  }
  return result;
}

template <class T>
py::tuple prepare(arr<T> X, py::object mu, py::object S, int s_mode, int nthreads) {
  rfmfast::PrepareParams<T> p{};
  p.nthreads = threads(nthreads);
  need(X.ndim() == 2, "prepare: X must be 2-D");
  p.n = X.shape(0);
  p.d = X.shape(1);
  p.r = p.d;
  need(s_mode >= 0 && s_mode <= 2, "prepare: s_mode must be 0, 1 or 2");
  arr<T> Sa, mua;
  p.s = ptr_or_null<T>(S, Sa);
  p.s_mode = s_mode;
  need(s_mode == 0 || p.s != nullptr, "prepare: s_mode 1 and 2 need S");
  if (!mu.is_none()) {
    mua = mu.cast<arr<T>>();
    need(mua.ndim() == 1 && mua.shape(0) == p.d, "prepare: mu must be (d,)");
    p.mu = mua.data();
  }
  if (s_mode == 1) need(Sa.ndim() == 1 && Sa.shape(0) == p.d, "prepare: S must be (d,)");
  if (s_mode == 2) {
    need(Sa.ndim() == 2 && Sa.shape(1) == p.d, "prepare: S must be (r, d)");
    p.r = Sa.shape(0);
  }
  arr<T> Xt({p.n, p.r}), norms({p.n});
  p.x = ptr(X);
  p.xt = mptr(Xt);
  p.norms = mptr(norms);
  {
    py::gil_scoped_release release;
    ops<T>().prepare(p);
  }
  return py::make_tuple(Xt, norms);
}

template <class T>
arr<T> pack_points(arr<T> P, int nthreads) {
  need(P.ndim() == 2, "pack_points: 2-D input");
  arr<T> out({ops<T>().packed_size(P.shape(1), P.shape(0))});
  T* o = mptr(out);
  const T* p = ptr(P);
  const int64_t n = P.shape(0), r = P.shape(1);
  py::gil_scoped_release release;
  ops<T>().pack_points(p, n, r, o, threads(nthreads));
  return out;
}

template <class T>
arr<T> pack_values(arr<T> V, int nthreads) {
  need(V.ndim() == 2, "pack_values: 2-D input");
  arr<T> out({ops<T>().packed_size(V.shape(0), V.shape(1))});
  T* o = mptr(out);
  const T* v = ptr(V);
  const int64_t n = V.shape(0), w = V.shape(1);
  py::gil_scoped_release release;
  ops<T>().pack_values(v, n, w, o, threads(nthreads));
  return out;
}

// The distance rule's exact path (kernels.h): the original rows, M's factor and the ratio.
template <class T>
struct ExactArgs {
  arr<T> X, Z;
  py::object S;
  rfmfast::Exact<T> ex;
  ExactArgs(arr<T> X_, arr<T> Z_, py::object S_, int s_mode, double resolve, int64_t r)
      : X(X_), Z(Z_), S(S_) {
    need(X.ndim() == 2 && Z.ndim() == 2 && X.shape(1) == Z.shape(1), "exact: original rows");
    const T* sp = nullptr;
    const int64_t d = X.shape(1);
    if (s_mode != 0) {
      auto Sa = S.cast<arr<T>>();
      need(s_mode == 1 ? (Sa.ndim() == 1 && Sa.shape(0) == d)
                       : (Sa.ndim() == 2 && Sa.shape(1) == d && Sa.shape(0) == r),
           "exact: S shape");
      S = Sa;
      sp = Sa.data();
    }
    ex = rfmfast::Exact<T>{X.data(), Z.data(), sp, s_mode, d, r, resolve};
  }
};

template <class T>
arr<T> pack_grad_values(arr<T> X, arr<T> alpha, int nthreads) {
  need(X.ndim() == 2 && alpha.ndim() == 2 && alpha.shape(0) == X.shape(0),
       "pack_grad_values: X (n, d), alpha (n, c)");
  const int64_t n = X.shape(0), d = X.shape(1), c = alpha.shape(1);
  arr<T> out({ops<T>().packed_size(n, c * d + c)});
  T* o = mptr(out);
  const T *x = ptr(X), *a = ptr(alpha);
  py::gil_scoped_release release;
  ops<T>().pack_grad_values(x, a, n, d, c, o, threads(nthreads));
  return out;
}

template <class T>
T* inplace(py::array& a, const char* what);

rfmfast::Kind kind_code(int kind, const char* op) {
  need(kind >= 0 && kind < rfmfast::NUM_KINDS,
       std::string(op) + ": unknown kernel code " + std::to_string(kind));
  return rfmfast::Kind(kind);
}

// The queries and centers of a kernel op (params.h), checked; ex is filled by the caller.
template <class T>
void distances(rfmfast::DistanceParams<T>& p, const arr<T>& Xt, const arr<T>& xn, const arr<T>& Zp,
               const arr<T>& zn, int64_t m, int kind, double bw, int nthreads, const char* op) {
  p.nthreads = threads(nthreads);
  p.kind = kind_code(kind, op);
  p.bandwidth = bw;
  p.n = Xt.shape(0);
  p.r = Xt.shape(1);
  p.m = m;
  need(zn.shape(0) == m && xn.shape(0) == p.n, std::string(op) + ": norms");
  p.xt = ptr(Xt);
  p.xn = ptr(xn);
  p.zp = ptr(Zp);
  p.zn = ptr(zn);
}

template <class T>
void kernel_matrix(arr<T> Xt, arr<T> xn, arr<T> Zp, arr<T> zn, int64_t m, int kind, double bw,
                   arr<T> X, arr<T> Z, py::object S, int s_mode, double resolve, int fill,
                   py::array out, int nthreads) {
  rfmfast::KernelMatrixParams<T> p{};
  distances<T>(p, Xt, xn, Zp, zn, m, kind, bw, nthreads, "kernel_matrix");
  const int64_t n = p.n;
  p.out = inplace<T>(out, "kernel_matrix: out");
  need(out.ndim() == 2 && out.shape(0) == n && out.shape(1) == m, "kernel_matrix: out shape");
  need(fill >= rfmfast::FILL_FULL && fill <= rfmfast::FILL_LOWER, "kernel_matrix: fill");
  need(fill == rfmfast::FILL_FULL || n == m, "kernel_matrix: symmetric fills need Z = X");
  p.fill = rfmfast::Fill(fill);
  ExactArgs<T> e(X, Z, S, s_mode, resolve, p.r);
  need(e.X.shape(0) == n && e.Z.shape(0) == m, "kernel_matrix: original rows");
  p.ex = e.ex;
  run([&] {
    ops<T>().kernel_matrix(p);
    return 0;
  });
}

// The value operand of kernel_matmul and nystroem_matmul: exactly one of a packed V (Vp) and V^T
// (Vt, only for t <= SMALL_T), its pointers set in p; vpa and vta keep the arrays alive.
template <class T, class P>
void value_operand(P& p, const py::object& Vp, const py::object& Vt, int64_t t, arr<T>& vpa,
                   arr<T>& vta, const std::string& op) {
  p.vp = ptr_or_null<T>(Vp, vpa);
  p.vt = ptr_or_null<T>(Vt, vta);
  need((p.vp == nullptr) != (p.vt == nullptr), op + ": give exactly one of Vp, Vt");
  need(p.vt == nullptr || t <= rfmfast::SMALL_T,
       op + ": Vt only for t <= " + std::to_string(rfmfast::SMALL_T));
  p.t = t;
}

template <class T>
void kernel_matmul(arr<T> Xt, arr<T> xn, arr<T> Zp, arr<T> zn, int64_t m, int kind, double bw,
                   arr<T> X, arr<T> Z, py::object S, int s_mode, double resolve, py::object Vp,
                   py::object Vt, int64_t t, arr<T> out, int nthreads) {
  rfmfast::KernelMatmulParams<T> p{};
  distances<T>(p, Xt, xn, Zp, zn, m, kind, bw, nthreads, "kernel_matmul");
  const int64_t n = p.n;
  need(out.ndim() == 2 && out.shape(0) == n && out.shape(1) == t, "kernel_matmul: out shape");
  ExactArgs<T> e(X, Z, S, s_mode, resolve, p.r);
  need(e.X.shape(0) == n && e.Z.shape(0) == m, "kernel_matmul: original rows");
  p.ex = e.ex;
  arr<T> vpa, vta;
  value_operand<T>(p, Vp, Vt, t, vpa, vta, "kernel_matmul");
  p.out = mptr(out);
  run([&] {
    ops<T>().kernel_matmul(p);
    return 0;
  });
}

template <class T>
void nystroem_matmul(arr<T> Xt, arr<T> xn, arr<T> Cp, arr<T> cn, int64_t m, int kind, double bw,
                     arr<T> X, arr<T> C, py::object S, int s_mode, double resolve, py::object Vp,
                     py::object Vt, int64_t t, py::object W, arr<T> out, int nthreads) {
  rfmfast::NystroemMatmulParams<T> p{};
  distances<T>(p, Xt, xn, Cp, cn, m, kind, bw, nthreads, "nystroem_matmul");
  const int64_t n = p.n;
  need(out.ndim() == 2 && out.shape(0) == m && out.shape(1) == t, "nystroem_matmul: out shape");
  ExactArgs<T> e(X, C, S, s_mode, resolve, p.r);
  need(e.X.shape(0) == n && e.Z.shape(0) == m, "nystroem_matmul: original rows");
  p.ex = e.ex;
  arr<T> vpa, vta, wa;
  value_operand<T>(p, Vp, Vt, t, vpa, vta, "nystroem_matmul");
  p.w = ptr_or_null<T>(W, wa);
  need(p.w == nullptr || (wa.ndim() == 2 && wa.shape(0) == n && wa.shape(1) == t),
       "nystroem_matmul: W (n, t)");
  p.out = mptr(out);
  run([&] {
    ops<T>().nystroem_matmul(p);
    return 0;
  });
}

template <class T>
void kernel_grads(arr<T> Qt, arr<T> qn, arr<T> Q, arr<T> Xp, arr<T> xn, arr<T> Qo, arr<T> X,
                  py::object S, int s_mode, arr<T> alpha, int kind, double bw, double scale,
                  double eps, double resolve, arr<T> Vp, arr<T> H, int nthreads) {
  rfmfast::KernelGradsParams<T> p{};
  const int64_t n = X.shape(0);
  distances<T>(p, Qt, qn, Xp, xn, n, kind, bw, nthreads, "kernel_grads");
  need(p.kind != rfmfast::L1_LAPLACE, "kernel_grads: l1_laplace has its own op, l1_grads");
  const int64_t q = p.n, d = Q.shape(1), c = alpha.shape(1);
  need(Q.shape(0) == q, "kernel_grads: shapes");
  need(X.ndim() == 2 && X.shape(1) == d && alpha.ndim() == 2 && alpha.shape(0) == n,
       "kernel_grads: X (n, d), alpha (n, c)");
  ExactArgs<T> e(Qo, X, S, s_mode, resolve, p.r);
  need(e.X.shape(0) == q, "kernel_grads: original queries");
  need(H.ndim() == 3 && H.shape(0) == q && H.shape(1) == c && H.shape(2) == d,
       "kernel_grads: H shape");
  p.ex = e.ex;
  p.q = ptr(Q);
  p.alpha = ptr(alpha);
  p.d = d;
  p.c = c;
  p.scale = scale;
  p.eps = eps;
  p.vp = ptr(Vp);
  p.h = mptr(H);
  run([&] {
    ops<T>().kernel_grads(p);
    return 0;
  });
}

template <class T>
void l1_grads(arr<T> Qt, arr<T> Xt, arr<T> Xp, arr<T> alpha, double bw, double scale, arr<T> H,
              int nthreads) {
  rfmfast::L1GradsParams<T> p{};
  p.nthreads = threads(nthreads);
  p.kind = rfmfast::L1_LAPLACE;
  p.bandwidth = bw;
  const int64_t q = Qt.shape(0), r = Qt.shape(1), n = Xt.shape(0), c = alpha.shape(1);
  need(Xt.shape(1) == r && alpha.shape(0) == n, "l1_grads: shapes");
  need(H.ndim() == 3 && H.shape(0) == q && H.shape(1) == c && H.shape(2) == r, "l1_grads: H shape");
  p.xt = ptr(Qt);
  p.n = q;
  p.zp = ptr(Xp);
  p.zt = ptr(Xt);
  p.m = n;
  p.r = r;
  p.alpha = ptr(alpha);
  p.c = c;
  p.scale = scale;
  p.h = mptr(H);
  run([&] {
    ops<T>().l1_grads(p);
    return 0;
  });
}

// An array written in place: it must already be a C-contiguous, writeable array of T (a
// converting cast would write into a temporary copy and lose the result).
template <class T>
T* inplace(py::array& a, const char* what) {
  need(py::isinstance<py::array_t<T>>(a), std::string(what) + ": wrong dtype");  // dtype only
  need((a.flags() & py::array::c_style) != 0, std::string(what) + ": must be C-contiguous");
  need(a.writeable(), std::string(what) + ": must be writeable");
  return static_cast<T*>(a.mutable_data());
}

// C (m x n) -= A (m x k) B (n x k)^T in place (lower: C square, lower-triangle tiles only).
template <class T>
void gemm_nt(py::array C, arr<T> A, arr<T> B, bool lower, int nthreads) {
  nthreads = threads(nthreads);
  T* c = inplace<T>(C, "gemm_nt: C");
  need(C.ndim() == 2 && A.ndim() == 2 && B.ndim() == 2, "gemm_nt: 2-D arrays");
  const int64_t m = C.shape(0), n = C.shape(1), k = A.shape(1);
  need(A.shape(0) == m && B.shape(0) == n && B.shape(1) == k, "gemm_nt: shapes");
  need(!lower || m == n, "gemm_nt: lower needs a square C");
  const T *a = ptr(A), *b = ptr(B);
  py::gil_scoped_release release;
  ops<T>().gemm_nt(m, n, k, a, k, b, k, c, n, lower, nthreads);
}

// A = L L^T in place (lower triangle; the upper is not read). Returns 0 or the failing pivot + 1.
template <class T>
int64_t cholesky(py::array A, int nthreads) {
  nthreads = threads(nthreads);
  T* a = inplace<T>(A, "cholesky: A");
  need(A.ndim() == 2 && A.shape(0) == A.shape(1), "cholesky: A must be square");
  const int64_t n = A.shape(0);
  return run([&] { return ops<T>().cholesky(a, n, n, nthreads); });
}

// The dual-activation recursion (dual_kernel.h) in place on out, an array of any shape.
template <class T>
void dual_recursion(py::array out, int depth, int act, bool ntk, arr<T> coeffs, double param,
                    double inv_norm, int nthreads) {
  rfmfast::DualParams<T> p{};
  p.nthreads = threads(nthreads);
  p.out = inplace<T>(out, "dual_recursion: out");
  p.count = out.size();
  need(depth >= 0, "dual_recursion: depth must be >= 0");
  need(act >= rfmfast::DUAL_POLY && act <= rfmfast::DUAL_SINE, "dual_recursion: activation code");
  need(act != rfmfast::DUAL_POLY ||
           (coeffs.ndim() == 1 && coeffs.size() >= 1 && coeffs.size() <= rfmfast::DUAL_MAX_DEGREE + 1),
       "dual_recursion: 1 to DUAL_MAX_DEGREE + 1 polynomial coefficients");
  p.depth = depth;
  p.act = act;
  p.ntk = ntk ? 1 : 0;
  p.degree = int(coeffs.size()) - 1;
  p.coeffs = ptr(coeffs);
  p.param = param;
  p.inv_norm = inv_norm;
  run([&] {
    ops<T>().dual_recursion(p);
    return 0;
  });
}

template <class T>
void bind_dtype(py::module_& m, const char* suffix) {
  auto name = [&](const char* base) { return std::string(base) + suffix; };
  m.def(name("prepare").c_str(), &prepare<T>);
  m.def(name("pack_points").c_str(), &pack_points<T>, py::arg("P"), py::arg("nthreads") = 1);
  m.def(name("pack_values").c_str(), &pack_values<T>, py::arg("V"), py::arg("nthreads") = 1);
  m.def(name("pack_grad_values").c_str(), &pack_grad_values<T>, py::arg("X"), py::arg("alpha"),
        py::arg("nthreads") = 1);
  m.def(name("kernel_matrix").c_str(), &kernel_matrix<T>);
  m.def(name("kernel_matmul").c_str(), &kernel_matmul<T>);
  m.def(name("nystroem_matmul").c_str(), &nystroem_matmul<T>);
  m.def(name("kernel_grads").c_str(), &kernel_grads<T>);
  m.def(name("l1_grads").c_str(), &l1_grads<T>);
  m.def(name("gemm_nt").c_str(), &gemm_nt<T>);
  m.def(name("cholesky").c_str(), &cholesky<T>);
  m.def(name("dual_recursion").c_str(), &dual_recursion<T>);
}

}  // namespace

PYBIND11_MODULE(RFMFAST_MODULE_NAME, m) {
  m.doc() = "rfmfast C++ CPU kernels (own thread pool; generic/AVX2/AVX-512 chosen at run time)";
  rfmfast::poll_interrupt = &poll_python_signals;
  bind_dtype<float>(m, "_f32");
  bind_dtype<double>(m, "_f64");
  m.def("isa", [] { return std::string(rfmfast::isa()); });
  m.def("available_isas", [] { return std::string(rfmfast::available_isas()); });
  m.def("set_isa", [](const std::string& s) { rfmfast::set_isa(s.c_str()); });
  m.def("cpu_features", [] { return std::string(rfmfast::cpu_features()); });
  m.def("panel_width_f32", [] { return int(ops<float>().packed_size(1, 1)); });
  m.def("dual_codes", [] {
    py::dict d;
    d["poly"] = int(rfmfast::DUAL_POLY);
    d["relu"] = int(rfmfast::DUAL_RELU);
    d["erf"] = int(rfmfast::DUAL_ERF);
    d["sine"] = int(rfmfast::DUAL_SINE);
    d["max_degree"] = rfmfast::DUAL_MAX_DEGREE;
    return d;
  });
  m.def("kernel_codes", [] {
    py::dict codes;
    for (int k = 0; k < rfmfast::NUM_KINDS; ++k) codes[rfmfast::KIND_NAMES[k]] = k;
    return codes;
  });
}
