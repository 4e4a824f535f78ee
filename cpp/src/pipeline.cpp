#include "confroute/pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "confroute/entropy.hpp"
#include "confroute/logprobs.hpp"
#include "confroute/parallel.hpp"
#include "confroute/ragged.hpp"
#include "kernels.hpp"

namespace confroute {

template <class F, class E>
ConfidenceBatch confidence_batch(const F* tlp, std::size_t T, const int64_t* token_offsets,
                                 const E* emb, std::size_t S, std::size_t D,
                                 const int64_t* sample_offsets, std::size_t B,
                                 double threshold, Method method, Reduce likelihood,
                                 int n_threads) {
  const std::size_t max_n = check_cluster_args(S, D, sample_offsets, B, threshold);
  check_token_offsets(token_offsets, S, T);

  ConfidenceBatch r;
  r.cluster_ids.resize(S);
  r.seq_logprob_sum.resize(S);
  r.seq_logprob_mean.resize(S);
  r.n_clusters.resize(B);
  r.n_samples.resize(B);
  for (auto* v : {&r.se_discrete, &r.se_weighted, &r.se_kuhn, &r.mean_token_logprob,
                  &r.max_sequence_prob, &r.mean_perplexity})
    v->resize(B);

  parallel_for(B, resolve_threads(n_threads, B), 64, [&](std::size_t begin, std::size_t end) {
    std::vector<double> inv_norms(max_n), scratch(3 * max_n);
    std::vector<int32_t> iscratch(max_n);
    for (std::size_t b = begin; b < end; ++b) {
      const int64_t lo = sample_offsets[b], hi = sample_offsets[b + 1];
      const std::size_t n = static_cast<std::size_t>(hi - lo);
      double mean_sum = 0, max_sum = -INFINITY, ppl_sum = 0;
      for (int64_t s = lo; s < hi; ++s) {
        const double sum =
            detail::sum(tlp + token_offsets[s], token_offsets[s + 1] - token_offsets[s]);
        if (!std::isfinite(sum))
          throw std::invalid_argument("token_logprobs of sample " + std::to_string(s) +
                                      " hold a NaN or infinite value");
        const int64_t len = token_offsets[s + 1] - token_offsets[s];
        const double mean = sum / static_cast<double>(len);
        r.seq_logprob_sum[s] = sum;
        r.seq_logprob_mean[s] = mean;
        mean_sum += mean;
        max_sum = std::max(max_sum, sum);
        ppl_sum += std::exp(-mean);

        const E* row = emb + s * D;
        const double nn = detail::dot(row, row, D);
        if (!(nn > 0) || !std::isfinite(nn))
          throw std::invalid_argument("embedding row " + std::to_string(s) +
                                      (nn == 0 ? " has zero norm" : " has a NaN or infinite value"));
        inv_norms[s - lo] = 1.0 / std::sqrt(nn);
      }
      r.n_clusters[b] = cluster_query(emb + lo * D, inv_norms.data(), n, D, threshold, method,
                                      r.cluster_ids.data() + lo, iscratch.data());
      const double* lp = (likelihood == Reduce::Mean ? r.seq_logprob_mean : r.seq_logprob_sum)
                             .data() + lo;
      const QueryEntropy e = query_entropy(r.cluster_ids.data() + lo, lp, n, scratch.data());
      r.n_samples[b] = static_cast<int32_t>(n);
      r.se_discrete[b] = e.discrete;
      r.se_weighted[b] = e.weighted;
      r.se_kuhn[b] = e.kuhn;
      r.mean_token_logprob[b] = mean_sum / static_cast<double>(n);
      r.max_sequence_prob[b] = std::exp(max_sum);
      r.mean_perplexity[b] = ppl_sum / static_cast<double>(n);
    }
  });
  return r;
}

#define CONFROUTE_PIPE(F, E)                                                                 \
  template ConfidenceBatch confidence_batch<F, E>(const F*, std::size_t, const int64_t*,    \
                                                  const E*, std::size_t, std::size_t,       \
                                                  const int64_t*, std::size_t, double, Method, \
                                                  Reduce, int);
CONFROUTE_PIPE(float, float)
CONFROUTE_PIPE(float, double)
CONFROUTE_PIPE(double, float)
CONFROUTE_PIPE(double, double)

}  // namespace confroute
