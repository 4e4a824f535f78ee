// Token and sequence log-probabilities.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace confroute {

enum class Reduce { Sum, Mean };
Reduce parse_reduce(const std::string& name);  // "sum" | "mean"

// out[m] = log softmax(logits[m, :] / temperature)[token_ids[m]] for M rows of V logits,
// computed with a max-shifted log-sum-exp. Throws std::invalid_argument on a non-finite
// logit, a token id outside [0, V) or a temperature that is not finite and > 0.
template <class F, class I>
void token_logprobs(const F* logits, std::size_t M, std::size_t V, const I* token_ids,
                    double temperature, double* out, int n_threads = 0);

// Per sample s: the sum, or the mean, of token_logprobs[token_offsets[s] ..
// token_offsets[s+1]). token_offsets has S+1 entries and ends at n_tokens. Throws on bad
// offsets, an empty sample or a non-finite logprob.
template <class F>
void sequence_logprobs(const F* token_logprobs, std::size_t n_tokens,
                       const int64_t* token_offsets, std::size_t S, Reduce reduce,
                       double* out);

// Checks token_offsets (S+1 entries from 0 to n_tokens, non-decreasing) and that every sample
// holds at least one token. An empty sample has no likelihood: its sum would be 0, probability
// 1, and it would outweigh every real answer. A finished answer always has one token, its
// end-of-generation token, whose probability is the model's probability of stopping there.
void check_token_offsets(const int64_t* token_offsets, std::size_t S, std::size_t n_tokens);

}  // namespace confroute
