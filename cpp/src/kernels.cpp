#include "kernels.hpp"

#include <cstdint>
#include <cstring>

#include "fastmath.hpp"

#if defined(__GNUC__) && defined(__x86_64__) && !defined(CONFROUTE_NATIVE) && \
    !defined(__SANITIZE_ADDRESS__)
#define CONFROUTE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CONFROUTE_CLONES
#endif

namespace confroute {
namespace detail {

CONFROUTE_CLONES double dot(const float* a, const float* b, std::size_t n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (std::size_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

CONFROUTE_CLONES double dot(const double* a, const double* b, std::size_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (std::size_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

CONFROUTE_CLONES double sum(const float* a, std::size_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(a[i]);
  return s;
}

CONFROUTE_CLONES double sum(const double* a, std::size_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (std::size_t i = 0; i < n; ++i) s += a[i];
  return s;
}

template <class F>
inline bool max_finite_impl(const F* a, std::size_t n, F* out) {
  F mx = a[0];
  int bad = 0;
#pragma omp simd reduction(max : mx) reduction(| : bad)
  for (std::size_t i = 0; i < n; ++i) {
    bad |= !(a[i] - a[i] == F(0));  // x - x is NaN for NaN and +-inf
    mx = a[i] > mx ? a[i] : mx;
  }
  *out = mx;
  return !bad;
}

CONFROUTE_CLONES bool max_finite(const float* a, std::size_t n, float* mx) {
  return max_finite_impl(a, n, mx);
}

CONFROUTE_CLONES bool max_finite(const double* a, std::size_t n, double* mx) {
  return max_finite_impl(a, n, mx);
}

CONFROUTE_CLONES double sum_exp_shifted(const float* row, std::size_t n, float mx, float scale) {
  double s = 0;
  std::size_t i = 0;
  // Float lanes summed into a double every 256 values: no digits lost that matter.
  while (i + 8 <= n) {
    v8f acc{};
    const std::size_t end = n - i >= 256 ? i + 256 : i + (n - i) / 8 * 8;
    for (; i < end; i += 8) {
      v8f x;
      std::memcpy(&x, row + i, sizeof x);
      acc += exp_nonpos((x - mx) * scale);
    }
    for (int l = 0; l < 8; ++l) s += acc[l];
  }
  for (; i < n; ++i) s += exp_nonpos((row[i] - mx) * scale);
  return s;
}

CONFROUTE_CLONES double sum_exp_shifted(const double* row, std::size_t n, double mx,
                                        double scale) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (std::size_t i = 0; i < n; ++i) s += exp_nonpos((row[i] - mx) * scale);
  return s;
}

}  // namespace detail
}  // namespace confroute
