// The inner loops every entry point spends its time in. Each is compiled twice on x86-64
// (AVX2 and the baseline) and picked at load time, so a portable build still runs at AVX2
// speed where the CPU has it (CONFROUTE_NATIVE builds compile just one, for this CPU).
#pragma once
#include <cstddef>

namespace confroute {
namespace detail {

// Float data is accumulated in float lanes (its own precision), double data in double.
double dot(const float* a, const float* b, std::size_t n);
double dot(const double* a, const double* b, std::size_t n);
double sum(const float* a, std::size_t n);
double sum(const double* a, std::size_t n);
// The largest value of a[0..n) into *mx (n >= 1); false if any value is NaN or infinite.
bool max_finite(const float* a, std::size_t n, float* mx);
bool max_finite(const double* a, std::size_t n, double* mx);
// sum_v exp((row[v] - mx) * scale), for mx >= every row[v]; accumulated in double.
double sum_exp_shifted(const float* row, std::size_t n, float mx, float scale);
double sum_exp_shifted(const double* row, std::size_t n, double mx, double scale);

}  // namespace detail
}  // namespace confroute
