#include "confroute/clustering.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "confroute/parallel.hpp"
#include "confroute/ragged.hpp"
#include "kernels.hpp"

namespace confroute {

Method parse_method(const std::string& name) {
  if (name == "greedy") return Method::Greedy;
  if (name == "components") return Method::Components;
  throw std::invalid_argument("unknown method '" + name + "': use 'greedy' or 'components'");
}

namespace {

int32_t find_root(int32_t* parent, int32_t i) {
  while (parent[i] != i) i = parent[i] = parent[parent[i]];
  return i;
}

}  // namespace

template <class F>
int32_t cluster_query(const F* rows, const double* inv_norms, std::size_t n, std::size_t D,
                      double threshold, Method method, int32_t* out, int32_t* scratch) {
  auto similar = [&](std::size_t i, std::size_t j) {
    return detail::dot(rows + i * D, rows + j * D, D) * inv_norms[i] * inv_norms[j] >= threshold;
  };
  int32_t k = 0;
  if (method == Method::Greedy) {
    int32_t* first = scratch;  // first member of each cluster
    for (std::size_t i = 0; i < n; ++i) {
      int32_t c = 0;
      while (c < k && !similar(i, static_cast<std::size_t>(first[c]))) ++c;
      if (c == k) first[k++] = static_cast<int32_t>(i);
      out[i] = c;
    }
    return k;
  }
  int32_t* parent = scratch;
  for (std::size_t i = 0; i < n; ++i) parent[i] = static_cast<int32_t>(i);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i + 1; j < n; ++j) {
      const int32_t a = find_root(parent, static_cast<int32_t>(i));
      const int32_t b = find_root(parent, static_cast<int32_t>(j));
      if (a != b && similar(i, j)) parent[a > b ? a : b] = a < b ? a : b;
    }
  // Roots are the smallest member of each component, so numbering roots in sample
  // order numbers the clusters in order of first appearance.
  for (std::size_t i = 0; i < n; ++i) {
    const int32_t r = find_root(parent, static_cast<int32_t>(i));
    if (r == static_cast<int32_t>(i)) out[i] = k++;
    else out[i] = out[r];
  }
  return k;
}

std::size_t check_cluster_args(std::size_t S, std::size_t D, const int64_t* sample_offsets,
                               std::size_t B, double threshold) {
  if (!(threshold >= -1.0 && threshold <= 1.0))
    throw std::invalid_argument("threshold must lie in [-1, 1], got " +
                                std::to_string(threshold));
  if (D == 0) throw std::invalid_argument("embeddings have no columns (D = 0)");
  check_offsets(sample_offsets, B + 1, static_cast<int64_t>(S), "sample_offsets", "samples",
                true);
  std::size_t max_n = 0;
  for (std::size_t b = 0; b < B; ++b)
    max_n = std::max<std::size_t>(max_n, sample_offsets[b + 1] - sample_offsets[b]);
  return max_n;
}

template <class F>
void cluster_by_similarity(const F* emb, std::size_t S, std::size_t D,
                           const int64_t* sample_offsets, std::size_t B, double threshold,
                           Method method, int32_t* out, int n_threads) {
  const std::size_t max_n = check_cluster_args(S, D, sample_offsets, B, threshold);
  std::vector<double> inv_norms(S);
  const std::size_t threads = resolve_threads(n_threads, B);
  parallel_for(B, threads, 64, [&](std::size_t begin, std::size_t end) {
    std::vector<int32_t> scratch(max_n);
    for (std::size_t b = begin; b < end; ++b) {
      const int64_t lo = sample_offsets[b], hi = sample_offsets[b + 1];
      for (int64_t s = lo; s < hi; ++s) {
        const double nn = detail::dot(emb + s * D, emb + s * D, D);
        if (!(nn > 0) || !std::isfinite(nn))
          throw std::invalid_argument("embedding row " + std::to_string(s) +
                                      (nn == 0 ? " has zero norm" : " has a NaN or infinite value"));
        inv_norms[s] = 1.0 / std::sqrt(nn);
      }
      cluster_query(emb + lo * D, inv_norms.data() + lo, static_cast<std::size_t>(hi - lo), D,
                    threshold, method, out + lo, scratch.data());
    }
  });
}

template int32_t cluster_query<float>(const float*, const double*, std::size_t, std::size_t,
                                      double, Method, int32_t*, int32_t*);
template int32_t cluster_query<double>(const double*, const double*, std::size_t, std::size_t,
                                       double, Method, int32_t*, int32_t*);
template void cluster_by_similarity<float>(const float*, std::size_t, std::size_t,
                                           const int64_t*, std::size_t, double, Method,
                                           int32_t*, int);
template void cluster_by_similarity<double>(const double*, std::size_t, std::size_t,
                                            const int64_t*, std::size_t, double, Method,
                                            int32_t*, int);

}  // namespace confroute
