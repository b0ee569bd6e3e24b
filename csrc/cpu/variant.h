// One instruction-set variant: every op, and the table of them (Ops) that dispatch.cpp looks up.
//
// Included once by each variant_<isa>.cpp, which names the variant (RFMFAST_VARIANT) and is
// compiled with that instruction set's flags (CMakeLists.txt).
#pragma once
#include "cholesky.h"
#include "dual_kernel.h"
#include "kernel_grads.h"
#include "kernel_matmul.h"
#include "kernel_matrix.h"
#include "kernels.h"
#include "l1_grads.h"
#include "nystroem_matmul.h"
#include "pack.h"
#include "prepare.h"
#include "simd.h"

namespace rfmfast {
namespace RFMFAST_VARIANT {

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
  o.prepare = &prepare<T>;
  o.packed_size = &packed_size<T>;
  o.pack_points = &pack_points<T>;
  o.pack_values = &pack_values<T>;
  o.pack_grad_values = &pack_grad_values<T>;
  o.kernel_matrix = &kernel_matrix<T>;
  o.kernel_matmul = &kernel_matmul<T>;
  o.nystroem_matmul = &nystroem_matmul<T>;
  o.kernel_grads = &kernel_grads<T>;
  o.l1_grads = &l1_grads<T>;
  o.gemm_nt = &gemm_nt<T>;
  o.cholesky = &cholesky<T>;
  o.dual_recursion = &dual_recursion<T>;
  return o;
}

}  // namespace RFMFAST_VARIANT

template <>
Ops<float> variant_ops<float, variant_tag::RFMFAST_VARIANT>() {
  return RFMFAST_VARIANT::make_ops<float>();
}
template <>
Ops<double> variant_ops<double, variant_tag::RFMFAST_VARIANT>() {
  return RFMFAST_VARIANT::make_ops<double>();
}

}  // namespace rfmfast
