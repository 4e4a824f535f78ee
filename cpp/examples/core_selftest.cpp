// Exercises every core entry point, the error paths included, on random ragged batches.
// Built with -DCONFROUTE_SANITIZE=ON by the tests so AddressSanitizer/UBSan see each read.
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <vector>

#include "confroute/confroute.hpp"

using namespace confroute;

static int failures = 0;
#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      std::printf("FAILED line %d: %s\n", __LINE__, #cond);          \
      ++failures;                                                    \
    }                                                                \
  } while (0)

template <class Fn>
static void expect_invalid(Fn fn, const char* what) {
  try {
    fn();
    std::printf("FAILED: no error for %s\n", what);
    ++failures;
  } catch (const std::invalid_argument&) {
  }
}

int main() {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  for (int trial = 0; trial < 50; ++trial) {
    const std::size_t B = 1 + rng() % 40, D = 1 + rng() % 16, V = 1 + rng() % 50;
    std::vector<int64_t> so{0}, to{0};
    for (std::size_t b = 0; b < B; ++b) so.push_back(so.back() + 1 + rng() % 6);
    const std::size_t S = so.back();
    for (std::size_t s = 0; s < S; ++s) to.push_back(to.back() + 1 + rng() % 5);
    const std::size_t T = to.back();
    std::vector<float> emb(S * D), logits(T * V);
    for (auto& x : emb) x = static_cast<float>(normal(rng)) + (rng() % 3 == 0 ? 3.0f : 0.0f);
    for (auto& x : logits) x = static_cast<float>(3 * normal(rng));
    std::vector<int64_t> tok(T);
    for (auto& t : tok) t = static_cast<int64_t>(rng() % V);
    std::vector<double> tlp(T), seq(S);
    token_logprobs(logits.data(), T, V, tok.data(), 0.7, tlp.data());
    for (double x : tlp) CHECK(x <= 1e-12 && std::isfinite(x));
    sequence_logprobs(tlp.data(), T, to.data(), S, Reduce::Mean, seq.data());
    const double thr = -1.0 + 2.0 * (rng() % 100) / 99.0;
    for (Method m : {Method::Greedy, Method::Components}) {
      std::vector<int32_t> ids(S);
      cluster_by_similarity(emb.data(), S, D, so.data(), B, thr, m, ids.data(), 2);
      std::vector<double> out(B);
      for (Kind k : {Kind::Discrete, Kind::Weighted, Kind::Kuhn}) {
        semantic_entropy(ids.data(), S, so.data(), B, seq.data(), k, out.data(), 2);
        for (std::size_t b = 0; b < B; ++b) {
          const double n = static_cast<double>(so[b + 1] - so[b]);
          CHECK(std::isfinite(out[b]) && out[b] >= -1e-12);
          if (k != Kind::Kuhn) CHECK(out[b] <= std::log(n) + 1e-9);
        }
      }
      const ConfidenceBatch r = confidence_batch(tlp.data(), T, to.data(), emb.data(), S, D,
                                                 so.data(), B, thr, m, Reduce::Mean, 2);
      for (std::size_t s = 0; s < S; ++s) CHECK(r.cluster_ids[s] == ids[s]);
    }
  }
  // Hand-worked: 4 samples in clusters {0,0,1,2}: discrete SE = -(.5 ln .5 + 2 * .25 ln .25).
  const int32_t ids[] = {0, 0, 1, 2};
  const int64_t so[] = {0, 4};
  double se = 0;
  semantic_entropy<int32_t, double>(ids, 4, so, 1, nullptr, Kind::Discrete, &se);
  CHECK(std::fabs(se - (-(0.5 * std::log(0.5) + 0.5 * std::log(0.25)))) < 1e-12);

  // Every documented bad input throws std::invalid_argument.
  const float lg[] = {0.f, 1.f, NAN, 2.f};
  const int64_t tk[] = {0, 5};
  double out[4];
  expect_invalid([&] { token_logprobs(lg, 2, 2, tk, 1.0, out); }, "NaN logit / bad token");
  expect_invalid([&] { token_logprobs(lg, 1, 2, tk, 0.0, out); }, "zero temperature");
  const int64_t bad_offsets[] = {1, 2};
  expect_invalid([&] { semantic_entropy<int32_t, double>(ids, 4, bad_offsets, 1, nullptr, Kind::Discrete, out); }, "offset start");
  const int64_t dec[] = {0, 3, 2, 4};
  expect_invalid([&] { semantic_entropy<int32_t, double>(ids, 4, dec, 3, nullptr, Kind::Discrete, out); }, "decreasing");
  const int64_t empty_q[] = {0, 0, 4};
  expect_invalid([&] { semantic_entropy<int32_t, double>(ids, 4, empty_q, 2, nullptr, Kind::Discrete, out); }, "empty query");
  expect_invalid([&] { semantic_entropy<int32_t, double>(ids, 4, so, 1, nullptr, Kind::Kuhn, out); }, "kuhn without logprobs");
  const double lp3[] = {-1.0, -2.0, -3.0};
  const int64_t empty_s[] = {0, 3, 3};
  expect_invalid([&] { sequence_logprobs(lp3, 3, empty_s, 2, Reduce::Sum, out); }, "empty sample");
  const float zero[] = {0, 0, 1, 0};
  const int64_t so2[] = {0, 2};
  int32_t cid[2];
  expect_invalid([&] { cluster_by_similarity(zero, 2, 2, so2, 1, 0.5, Method::Greedy, cid); }, "zero norm");
  expect_invalid([&] { cluster_by_similarity(zero + 2, 1, 2, so2, 1, 1.5, Method::Greedy, cid); }, "threshold");
  expect_invalid([] { parse_kind("nope"); }, "unknown kind");

  std::printf("core_selftest: %s (%d failures)\n", failures ? "FAILED" : "ok", failures);
  return failures ? 1 : 0;
}
