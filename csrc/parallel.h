// A minimal parallel_for over std::thread: the extension is torch-free, so it cannot
// use at::parallel_for, and a second OpenMP runtime beside torch's is best avoided.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace fmae {

// Calls fn(begin, end) on disjoint chunks covering [0, n), on up to
// hardware_concurrency threads, each chunk at least `grain` long (but the last).
// Rethrows the first exception a chunk threw; after one, no new chunk starts.
//
// Chunks are handed out on demand, several per thread, rather than one equal share
// each: on a shared machine a thread may run at half speed (another process, or
// torch's OpenMP workers still spinning after its last op), and the other threads then
// take over its share instead of waiting for it.
template <typename F>
void parallel_for(int64_t n, int64_t grain, F&& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t workers = std::min<int64_t>(hw, std::max<int64_t>(1, n / grain));
  if (workers == 1) {
    fn(int64_t{0}, n);
    return;
  }
  constexpr int64_t kChunksPerWorker = 8;
  const int64_t chunk = std::max(grain, (n + workers * kChunksPerWorker - 1) / (workers * kChunksPerWorker));
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::vector<std::exception_ptr> errors(workers);
  auto run = [&](int64_t w) {
    try {
      for (int64_t begin = next.fetch_add(chunk); begin < n && !failed.load(); begin = next.fetch_add(chunk))
        fn(begin, std::min(n, begin + chunk));
    } catch (...) {
      errors[w] = std::current_exception();
      failed.store(true);
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(workers - 1);
  for (int64_t w = 1; w < workers; ++w) threads.emplace_back(run, w);
  run(0);
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace fmae
