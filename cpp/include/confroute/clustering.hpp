// Grouping a query's samples by meaning: cosine similarity of their embeddings.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace confroute {

// Greedy: Kuhn et al.'s procedure. Samples in order; a sample joins the first cluster whose
// first member has similarity >= threshold, else it opens a new cluster.
// Components: connected components of the graph with an edge where similarity >= threshold.
enum class Method { Greedy, Components };
Method parse_method(const std::string& name);  // "greedy" | "components"

// embeddings: [S, D] rows (normalized inside); sample_offsets: B+1 entries ending at S,
// every query non-empty. out[s]: cluster id local to the query, 0, 1, ... in order of first
// appearance. Throws on bad offsets, a threshold outside [-1, 1], a non-finite or zero-norm row.
template <class F>
void cluster_by_similarity(const F* embeddings, std::size_t S, std::size_t D,
                           const int64_t* sample_offsets, std::size_t B, double threshold,
                           Method method, int32_t* out, int n_threads = 0);

// Checks what every clustering call needs (a threshold in [-1, 1], D > 0, non-empty queries
// covering all S rows) and returns the largest query's sample count.
std::size_t check_cluster_args(std::size_t S, std::size_t D, const int64_t* sample_offsets,
                               std::size_t B, double threshold);

// One query's clustering, for callers that loop themselves (no checks of the inputs;
// inv_norms[s] = 1/||row s||). Returns the number of clusters.
template <class F>
int32_t cluster_query(const F* rows, const double* inv_norms, std::size_t n, std::size_t D,
                      double threshold, Method method, int32_t* out, int32_t* scratch);

}  // namespace confroute
