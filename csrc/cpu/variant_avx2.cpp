// The avx2 variant of the kernels: AVX2 and FMA; flags in CMakeLists.txt.
#define RFMFAST_VARIANT avx2
#include "variant.h"
