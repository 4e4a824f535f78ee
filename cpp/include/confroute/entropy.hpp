// Semantic entropy over meaning clusters, natural logarithms.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace confroute {

// Discrete: p_c = n_c / N. Weighted: ln p_c = logsumexp_{s in c} l_s - logsumexp_all l_s.
// Both give SE = -sum_c p_c ln p_c. Kuhn: the Monte-Carlo form -(1/|C|) sum_c ln p_c with
// the weighted p_c (Kuhn et al., Eq. 2).
enum class Kind { Discrete, Weighted, Kuhn };
Kind parse_kind(const std::string& name);  // "discrete" | "weighted" | "kuhn"

// cluster_ids[S] local to each query (0 <= id < the query's sample count);
// seq_logprobs[S] may be null for Discrete only. out[B].
template <class I, class F>
void semantic_entropy(const I* cluster_ids, std::size_t S, const int64_t* sample_offsets,
                      std::size_t B, const F* seq_logprobs, Kind kind, double* out,
                      int n_threads = 0);

// One query's three entropies from its n cluster ids (each in [0, n)) and, unless null,
// its sequence logprobs. scratch holds 3n doubles. Entropies that need logprobs are NaN
// when lp is null.
struct QueryEntropy {
  double discrete, weighted, kuhn;
  int32_t n_clusters;
};
template <class I, class F>
QueryEntropy query_entropy(const I* ids, const F* lp, std::size_t n, double* scratch);

}  // namespace confroute
