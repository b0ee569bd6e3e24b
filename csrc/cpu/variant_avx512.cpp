// The avx512 variant of the kernels: AVX-512 F/DQ/VL/BW and FMA; flags in CMakeLists.txt.
#define RFMFAST_VARIANT avx512
#include "variant.h"
