// Host-side helpers of the CUDA launchers (CUDA-only; the CPU build never includes it).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace fmae {

// Turns a CUDA error into an exception, which pybind11 raises as a Python RuntimeError.
inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// A kernel launch reports a bad configuration or a missing device only through
// cudaGetLastError.
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

inline cudaStream_t as_stream(uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

// Makes the device that owns `ptr` current for the guard's lifetime: the caller's
// stream belongs to that device, and launching on another device's stream fails.
class DeviceGuard {
 public:
  explicit DeviceGuard(const void* ptr) {
    cudaPointerAttributes attr{};
    check_cuda(cudaPointerGetAttributes(&attr, ptr), "cudaPointerGetAttributes");
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
      throw std::invalid_argument("expected a pointer to CUDA device memory");
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (attr.device != previous_) check_cuda(cudaSetDevice(attr.device), "cudaSetDevice");
    switched_ = attr.device != previous_;
  }
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(previous_);  // a destructor cannot throw; nothing to undo on failure
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

// Grid size for `items` work items at `per_block` items per block, capped where the
// kernels' grid-stride loops take over.
inline unsigned int blocks_for(int64_t items, int64_t per_block, int64_t cap = int64_t{1} << 16) {
  const int64_t blocks = (items + per_block - 1) / per_block;
  return static_cast<unsigned int>(blocks < cap ? blocks : cap);
}

}  // namespace fmae
