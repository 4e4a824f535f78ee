// exp on (-inf, 0] in plain arithmetic that compilers vectorize (std::exp does not
// vectorize without -ffast-math). Used only inside log-sum-exp, after the max shift.
#pragma once
#include <cstdint>
#include <cstring>

namespace confroute {
namespace detail {

// Eight floats as one value (GCC/Clang vector extensions): two SSE registers on the
// baseline, one AVX2 register in the AVX2 clone. The loops over logits use it because GCC
// turns the scalar exp's clamp into a branch and leaves such a loop scalar.
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

inline int32_t to_int(float x) { return static_cast<int32_t>(x); }
inline float to_float(int32_t k) { return static_cast<float>(k); }
inline v8i to_int(v8f x) { return __builtin_convertvector(x, v8i); }
inline v8f to_float(v8i k) { return __builtin_convertvector(k, v8f); }

// float (F = float or v8f, I its int32 twin): Taylor degree 7 on |r| <= ln2/2, relative
// error ~2e-8 (below float eps); inputs below -87 give exp(-87) rather than a denormal.
template <class F, class I>
__attribute__((always_inline)) inline F exp_nonpos_f32(F x) {
  const F lo = F{} - 87.0f;
  x = x < lo ? lo : x;
  const I ki = to_int(x * 1.44269504f - 0.5f);  // round to nearest, since x <= 0
  const F k = to_float(ki);
  const F r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
  F p = F{} + 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const I bits = (ki + 127) << 23;  // 2^k
  F scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
inline float exp_nonpos(float x) { return exp_nonpos_f32<float, int32_t>(x); }
inline v8f exp_nonpos(v8f x) { return exp_nonpos_f32<v8f, v8i>(x); }

// double: Taylor degree 12 on |r| <= ln2/2, relative error ~1e-15.
inline double exp_nonpos(double x) {
  x = x < -708.0 ? -708.0 : x;
  const double k = static_cast<double>(static_cast<int64_t>(x * 1.4426950408889634 - 0.5));
  const double r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10;
  double p = 1.0 / 479001600;
  p = p * r + 1.0 / 39916800;
  p = p * r + 1.0 / 3628800;
  p = p * r + 1.0 / 362880;
  p = p * r + 1.0 / 40320;
  p = p * r + 1.0 / 5040;
  p = p * r + 1.0 / 720;
  p = p * r + 1.0 / 120;
  p = p * r + 1.0 / 24;
  p = p * r + 1.0 / 6;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const int64_t bits = (static_cast<int64_t>(k) + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace detail
}  // namespace confroute
