#include "confroute/pipeline.hpp"

namespace confroute {

#define CONFROUTE_STR2(x) #x
#define CONFROUTE_STR(x) CONFROUTE_STR2(x)

const char* build_info() {
  return "confroute core; C++" CONFROUTE_STR(__cplusplus)
#if defined(__clang__)
         "; clang " __clang_version__
#elif defined(__GNUC__)
         "; gcc " __VERSION__
#endif
#if defined(CONFROUTE_NATIVE)
         "; native=on"
#else
         "; native=off"
#endif
#if defined(__AVX2__)
         "; simd=avx2"
#elif defined(__SSE2__)
         "; simd=sse2"
#endif
#if defined(__SANITIZE_ADDRESS__)
         "; asan=on"
#else
         "; asan=off"
#endif
      ;
}

}  // namespace confroute
