#include "confroute/entropy.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "confroute/parallel.hpp"
#include "confroute/ragged.hpp"

namespace confroute {

Kind parse_kind(const std::string& name) {
  if (name == "discrete") return Kind::Discrete;
  if (name == "weighted") return Kind::Weighted;
  if (name == "kuhn") return Kind::Kuhn;
  throw std::invalid_argument("unknown kind '" + name +
                              "': use 'discrete', 'weighted' or 'kuhn'");
}

template <class I, class F>
QueryEntropy query_entropy(const I* ids, const F* lp, std::size_t n, double* scratch) {
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  // counts[c] as doubles; with logprobs, also each cluster's max and shifted sum of exp.
  double* counts = scratch;
  std::fill(counts, counts + n, 0.0);
  for (std::size_t i = 0; i < n; ++i) counts[ids[i]] += 1.0;
  QueryEntropy r{0.0, kNaN, kNaN, 0};
  const double N = static_cast<double>(n);
  for (std::size_t c = 0; c < n; ++c)
    if (counts[c] > 0) {
      const double p = counts[c] / N;
      r.discrete -= p * std::log(p);
      ++r.n_clusters;
    }
  if (!lp) return r;
  // ln p_c = logsumexp_{s in c} l_s - logsumexp_all l_s, each log-sum-exp shifted by its
  // own max so that no cluster underflows, however far below the others it lies.
  double* cmax = scratch + n;
  double* csum = scratch + 2 * n;
  std::fill(cmax, cmax + n, -std::numeric_limits<double>::infinity());
  std::fill(csum, csum + n, 0.0);
  double mx = -std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < n; ++i) {
    const double l = static_cast<double>(lp[i]);
    cmax[ids[i]] = std::max(cmax[ids[i]], l);
    mx = std::max(mx, l);
  }
  for (std::size_t i = 0; i < n; ++i)
    csum[ids[i]] += std::exp(static_cast<double>(lp[i]) - cmax[ids[i]]);
  double total = 0;  // sum_s exp(l_s - mx), from the clusters' sums: k exps instead of n
  for (std::size_t c = 0; c < n; ++c)
    if (counts[c] > 0) total += csum[c] * std::exp(cmax[c] - mx);
  const double log_total = mx + std::log(total);
  double weighted = 0, sum_log = 0;
  for (std::size_t c = 0; c < n; ++c) {
    if (counts[c] == 0) continue;
    const double log_p = cmax[c] + std::log(csum[c]) - log_total;
    weighted -= std::exp(log_p) * log_p;
    sum_log += log_p;
  }
  // One cluster holds all the mass: exactly 0, not a rounding residue of either sign.
  r.weighted = r.n_clusters == 1 ? 0.0 : weighted;
  r.kuhn = r.n_clusters == 1 ? 0.0 : -sum_log / r.n_clusters;
  return r;
}

template <class I, class F>
void semantic_entropy(const I* ids, std::size_t S, const int64_t* sample_offsets,
                      std::size_t B, const F* lp, Kind kind, double* out, int n_threads) {
  if (kind != Kind::Discrete && !lp)
    throw std::invalid_argument(
        "kind 'weighted' and 'kuhn' need seq_logprobs (one per sample); 'discrete' does not");
  check_offsets(sample_offsets, B + 1, static_cast<int64_t>(S), "sample_offsets", "samples",
                true);
  for (std::size_t s = 0; s < S; ++s) {
    if (lp && !std::isfinite(static_cast<double>(lp[s])))
      throw std::invalid_argument("seq_logprobs[" + std::to_string(s) +
                                  "] is NaN or infinite");
  }
  std::size_t max_n = 0;
  for (std::size_t b = 0; b < B; ++b) {
    const int64_t lo = sample_offsets[b], hi = sample_offsets[b + 1];
    max_n = std::max<std::size_t>(max_n, hi - lo);
    for (int64_t s = lo; s < hi; ++s)
      if (ids[s] < 0 || ids[s] >= hi - lo)
        throw std::invalid_argument(
            "cluster_ids[" + std::to_string(s) + "] = " + std::to_string(ids[s]) +
            " is outside [0, " + std::to_string(hi - lo) + "), the sample count of query " +
            std::to_string(b) + " (ids are local to each query)");
  }
  const F* lp_use = kind == Kind::Discrete ? nullptr : lp;
  parallel_for(B, resolve_threads(n_threads, B), 256, [&](std::size_t begin, std::size_t end) {
    std::vector<double> scratch(3 * max_n);
    for (std::size_t b = begin; b < end; ++b) {
      const int64_t lo = sample_offsets[b];
      const std::size_t n = static_cast<std::size_t>(sample_offsets[b + 1] - lo);
      const QueryEntropy e =
          query_entropy(ids + lo, lp_use ? lp_use + lo : nullptr, n, scratch.data());
      out[b] = kind == Kind::Discrete ? e.discrete : kind == Kind::Weighted ? e.weighted : e.kuhn;
    }
  });
}

#define CONFROUTE_SE(I, F)                                                                    \
  template QueryEntropy query_entropy<I, F>(const I*, const F*, std::size_t, double*);       \
  template void semantic_entropy<I, F>(const I*, std::size_t, const int64_t*, std::size_t, \
                                       const F*, Kind, double*, int);
CONFROUTE_SE(int32_t, float)
CONFROUTE_SE(int32_t, double)
CONFROUTE_SE(int64_t, float)
CONFROUTE_SE(int64_t, double)

}  // namespace confroute
