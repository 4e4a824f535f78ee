// Semantic entropy for a small batch from C++ alone: no Python involved.
// Two queries: the first's three samples agree (one meaning), the second's disagree.
#include <cstdio>
#include <vector>

#include "confroute/confroute.hpp"

int main() {
  using namespace confroute;
  // Sample embeddings [S=6, D=3]: query 0 = samples 0-2, query 1 = samples 3-5.
  const std::vector<float> emb = {1, 0, 0,  0.99f, 0.1f, 0,  0.98f, 0, 0.1f,
                                  1, 0, 0,  0, 1, 0,        0, 0, 1};
  const std::vector<int64_t> sample_offsets = {0, 3, 6};
  // Two tokens per sample.
  const std::vector<float> token_lp = {-0.1f, -0.2f, -0.3f, -0.1f, -0.2f, -0.2f,
                                       -1.0f, -2.0f, -0.5f, -0.5f, -3.0f, -1.0f};
  const std::vector<int64_t> token_offsets = {0, 2, 4, 6, 8, 10, 12};
  const ConfidenceBatch r = confidence_batch(
      token_lp.data(), token_lp.size(), token_offsets.data(), emb.data(), 6, 3,
      sample_offsets.data(), 2, 0.9, Method::Greedy, Reduce::Mean);
  std::printf("%s\n", build_info());
  for (std::size_t b = 0; b < 2; ++b)
    std::printf("query %zu: clusters=%d se_discrete=%.6f se_weighted=%.6f se_kuhn=%.6f\n", b,
                r.n_clusters[b], r.se_discrete[b], r.se_weighted[b], r.se_kuhn[b]);
  return 0;
}
