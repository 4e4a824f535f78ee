// A minimal parallel-for: work split in chunks over std::threads, first error rethrown.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace confroute {

// Threads to use for `n_threads` (0 = all hardware threads), never more than `work`.
inline std::size_t resolve_threads(int n_threads, std::size_t work) {
  std::size_t t = n_threads > 0 ? static_cast<std::size_t>(n_threads)
                                : std::max(1u, std::thread::hardware_concurrency());
  return std::max<std::size_t>(1, std::min(t, work));
}

// Calls fn(begin, end) on chunks of [0, n). Runs inline with one thread. The first
// exception thrown by any worker stops the others from taking new chunks and is rethrown.
template <class Fn>
void parallel_for(std::size_t n, std::size_t threads, std::size_t chunk, Fn&& fn) {
  if (n == 0) return;
  chunk = std::max<std::size_t>(1, chunk);
  if (threads <= 1 || n <= chunk) {
    fn(std::size_t(0), n);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&] {
    while (!failed.load(std::memory_order_relaxed)) {
      std::size_t begin = next.fetch_add(chunk);
      if (begin >= n) break;
      try {
        fn(begin, std::min(n, begin + chunk));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        failed = true;
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace confroute
