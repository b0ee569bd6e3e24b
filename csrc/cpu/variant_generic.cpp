// The generic variant of the kernels: SSE2 at most, or plain C++; flags in CMakeLists.txt.
#define RFMFAST_VARIANT generic
#include "variant.h"
