// A minimal parallel_for over std::thread: the extension is torch-free, so it cannot
// use at::parallel_for, and a second OpenMP runtime beside torch's is best avoided.
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace fmae {

// Calls fn(begin, end) on disjoint chunks covering [0, n), on up to
// hardware_concurrency threads, each chunk at least `grain` long. Rethrows the first
// exception a chunk threw.
template <typename F>
void parallel_for(int64_t n, int64_t grain, F&& fn) {
  if (n <= 0) return;
  const int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t workers = std::min<int64_t>(hw, std::max<int64_t>(1, n / std::max<int64_t>(1, grain)));
  if (workers == 1) {
    fn(int64_t{0}, n);
    return;
  }
  std::vector<std::exception_ptr> errors(workers);
  std::vector<std::thread> threads;
  threads.reserve(workers - 1);
  const int64_t chunk = (n + workers - 1) / workers;
  auto run = [&](int64_t w) {
    try {
      const int64_t begin = w * chunk, end = std::min(n, begin + chunk);
      if (begin < end) fn(begin, end);
    } catch (...) {
      errors[w] = std::current_exception();
    }
  };
  for (int64_t w = 1; w < workers; ++w) threads.emplace_back(run, w);
  run(0);
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace fmae
