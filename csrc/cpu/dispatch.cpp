// The run-time choice of variant: the fastest one the CPU (and OS) supports, picked once.
// RFMFAST_CPU_ISA or set_isa() can choose a slower one (tests run every variant this way).
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels.h"

namespace rfmfast {

bool (*poll_interrupt)() = nullptr;

namespace {

bool supports(const std::string& name) {
  if (name == "generic") return true;
#if defined(RFMFAST_X86)
  __builtin_cpu_init();
  if (name == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (name == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("fma");
#endif
  return false;
}

std::string best() {
  for (const char* name : {"avx512", "avx2"})
    if (supports(name)) return name;
  return "generic";
}

struct Table {
  Ops<float> f;
  Ops<double> d;
};

Table load(const std::string& name) {
#if defined(RFMFAST_X86)
  if (name == "avx512")
    return {variant_ops<float, variant_tag::avx512>(), variant_ops<double, variant_tag::avx512>()};
  if (name == "avx2")
    return {variant_ops<float, variant_tag::avx2>(), variant_ops<double, variant_tag::avx2>()};
#endif
  return {variant_ops<float, variant_tag::generic>(), variant_ops<double, variant_tag::generic>()};
}

Table& current() {
  static Table table = [] {
    const char* env = std::getenv("RFMFAST_CPU_ISA");
    std::string name = env && *env ? env : best();
    if (!supports(name)) name = best();
    return load(name);
  }();
  return table;
}

}  // namespace

template <>
const Ops<float>& ops<float>() {
  return current().f;
}
template <>
const Ops<double>& ops<double>() {
  return current().d;
}

const char* isa() { return current().f.isa; }

void set_isa(const char* name) {
  std::string s = name;
  if (s != "generic" && s != "avx2" && s != "avx512")
    throw std::invalid_argument("unknown ISA '" + s + "' (generic, avx2, avx512)");
  if (!supports(s)) throw std::invalid_argument("this CPU cannot run the " + s + " code path");
  current() = load(s);
}

const char* available_isas() {
  static std::string s = [] {
    std::string out;
    for (const char* name : {"avx512", "avx2", "generic"})
      if (supports(name)) out += std::string(out.empty() ? "" : ",") + name;
    return out;
  }();
  return s.c_str();
}

const char* cpu_features() {
  static std::string s = [] {
    std::string out;
#if defined(RFMFAST_X86)
    __builtin_cpu_init();
#define RFMFAST_FEATURE(f) \
  if (__builtin_cpu_supports(f)) out += std::string(out.empty() ? "" : " ") + f;
    RFMFAST_FEATURE("sse4.2")
    RFMFAST_FEATURE("avx")
    RFMFAST_FEATURE("avx2")
    RFMFAST_FEATURE("fma")
    RFMFAST_FEATURE("avx512f")
    RFMFAST_FEATURE("avx512dq")
    RFMFAST_FEATURE("avx512vl")
    RFMFAST_FEATURE("avx512bw")
#undef RFMFAST_FEATURE
#else
    out = "non-x86 (generic code path)";
#endif
    return out;
  }();
  return s.c_str();
}

}  // namespace rfmfast
