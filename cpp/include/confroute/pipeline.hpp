// The whole confidence computation for a batch in one call.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "confroute/clustering.hpp"
#include "confroute/logprobs.hpp"

namespace confroute {

struct ConfidenceBatch {
  // per sample [S]
  std::vector<int32_t> cluster_ids;
  std::vector<double> seq_logprob_sum, seq_logprob_mean;
  // per query [B]
  std::vector<int32_t> n_clusters, n_samples;
  std::vector<double> se_discrete, se_weighted, se_kuhn;
  std::vector<double> mean_token_logprob;  // mean over samples of the length-normalized logprob
  std::vector<double> max_sequence_prob;   // exp(max over samples of the summed logprob)
  std::vector<double> mean_perplexity;     // mean over samples of exp(-mean token logprob)
};

// token_logprobs[T] with token_offsets[S+1]; embeddings[S, D] with sample_offsets[B+1].
// Weighted and Kuhn SE use the sequence logprobs reduced by `likelihood` (Mean: the
// length-normalized log-likelihood, as in the paper).
template <class F, class E>
ConfidenceBatch confidence_batch(const F* token_logprobs, std::size_t T,
                                 const int64_t* token_offsets, const E* embeddings,
                                 std::size_t S, std::size_t D, const int64_t* sample_offsets,
                                 std::size_t B, double threshold, Method method,
                                 Reduce likelihood, int n_threads = 0);

// What was compiled in, e.g. "confroute 0.1.0; C++17; gcc 12.2; native=off; asan=off".
const char* build_info();

}  // namespace confroute
