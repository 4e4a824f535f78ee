// exp on (-inf, 0] in plain arithmetic that compilers vectorize (std::exp does not
// vectorize without -ffast-math). Used only inside log-sum-exp, after the max shift.
#pragma once
#include <cstdint>
#include <cstring>

namespace confroute {
namespace detail {

// float: Taylor degree 7 on |r| <= ln2/2, relative error ~2e-8 (below float eps).
inline float exp_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float k = static_cast<float>(static_cast<int32_t>(x * 1.44269504f - 0.5f));
  const float r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

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
