#include "confroute/logprobs.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "confroute/parallel.hpp"
#include "confroute/ragged.hpp"
#include "kernels.hpp"

namespace confroute {

Reduce parse_reduce(const std::string& name) {
  if (name == "sum") return Reduce::Sum;
  if (name == "mean") return Reduce::Mean;
  throw std::invalid_argument("unknown reduce '" + name + "': use 'sum' or 'mean'");
}

namespace {

// log softmax(row / t)[tok] for one row; throws on a non-finite logit.
template <class F>
double row_logprob(const F* row, std::size_t V, std::size_t tok, double temperature,
                   std::size_t m) {
  F mx;
  if (!detail::max_finite(row, V, &mx))
    throw std::invalid_argument("logits row " + std::to_string(m) +
                                " has a NaN or infinite value");
  const F scale = static_cast<F>(1.0 / temperature);
  const double sum = detail::sum_exp_shifted(row, V, mx, scale);
  return static_cast<double>((row[tok] - mx) * scale) - std::log(sum);
}

}  // namespace

template <class F, class I>
void token_logprobs(const F* logits, std::size_t M, std::size_t V, const I* token_ids,
                    double temperature, double* out, int n_threads) {
  if (!(temperature > 0) || !std::isfinite(temperature))
    throw std::invalid_argument("temperature must be finite and > 0, got " +
                                std::to_string(temperature));
  if (M > 0 && V == 0) throw std::invalid_argument("logits have no vocabulary columns");
  for (std::size_t m = 0; m < M; ++m)
    if (token_ids[m] < 0 || static_cast<uint64_t>(token_ids[m]) >= V)
      throw std::invalid_argument("token_ids[" + std::to_string(m) + "] = " +
                                  std::to_string(token_ids[m]) +
                                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
  // Threads only pay off on large batches (one decode step of a few rows stays inline).
  const std::size_t threads = M * V >= (1u << 20) ? resolve_threads(n_threads, M) : 1;
  parallel_for(M, threads, 4, [&](std::size_t begin, std::size_t end) {
    for (std::size_t m = begin; m < end; ++m)
      out[m] = row_logprob(logits + m * V, V, static_cast<std::size_t>(token_ids[m]),
                           temperature, m);
  });
}

void check_token_offsets(const int64_t* token_offsets, std::size_t S, std::size_t n_tokens) {
  check_offsets(token_offsets, S + 1, static_cast<int64_t>(n_tokens), "token_offsets",
                "tokens", false);
  for (std::size_t s = 0; s < S; ++s)
    if (token_offsets[s + 1] == token_offsets[s])
      throw std::invalid_argument(
          "sample " + std::to_string(s) +
          " has no tokens: an empty sample has no likelihood (include the "
          "end-of-generation token's logprob in each sample)");
}

template <class F>
void sequence_logprobs(const F* lp, std::size_t n_tokens, const int64_t* token_offsets,
                       std::size_t S, Reduce reduce, double* out) {
  check_token_offsets(token_offsets, S, n_tokens);
  for (std::size_t s = 0; s < S; ++s) {
    const double sum = detail::sum(lp + token_offsets[s], token_offsets[s + 1] - token_offsets[s]);
    if (!std::isfinite(sum))
      throw std::invalid_argument("token_logprobs of sample " + std::to_string(s) +
                                  " hold a NaN or infinite value");
    const int64_t len = token_offsets[s + 1] - token_offsets[s];
    out[s] = reduce == Reduce::Sum ? sum : sum / static_cast<double>(len);
  }
}

#define CONFROUTE_TLP(F, I) \
  template void token_logprobs<F, I>(const F*, std::size_t, std::size_t, const I*, double, \
                                     double*, int);
CONFROUTE_TLP(float, int32_t)
CONFROUTE_TLP(float, int64_t)
CONFROUTE_TLP(double, int32_t)
CONFROUTE_TLP(double, int64_t)
template void sequence_logprobs<float>(const float*, std::size_t, const int64_t*, std::size_t,
                                       Reduce, double*);
template void sequence_logprobs<double>(const double*, std::size_t, const int64_t*,
                                        std::size_t, Reduce, double*);

}  // namespace confroute
