// fmae._C: the CPU extension. Functions take data pointers (tensor.data_ptr()) and
// shapes; the Python side (fmae/ops/) owns tensors, dtypes and validation.
#include <pybind11/pybind11.h>

#include "ops_cpu.h"

namespace py = pybind11;

namespace {

template <typename T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "FMAE CPU kernels over raw buffers";
  m.def(
      "region_histogram",
      [](uintptr_t maps, uintptr_t out, int64_t B, int64_t T, int64_t H, int64_t W, int64_t tt, int64_t th,
         int64_t tw, int64_t K) {
        fmae::region_histogram_cpu(ptr<const uint8_t>(maps), ptr<float>(out), B, T, H, W, tt, th, tw, K);
      },
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "gather_tokens",
      [](uintptr_t x, uintptr_t index, uintptr_t out, int64_t B, int64_t N, int64_t M, int64_t C, int64_t es) {
        fmae::gather_tokens_cpu(ptr<const void>(x), ptr<const int64_t>(index), ptr<void>(out), B, N, M, C, es);
      },
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "scatter_tokens",
      [](uintptr_t src, uintptr_t index, uintptr_t out, int64_t B, int64_t M, int64_t n, int64_t C, int64_t es) {
        fmae::scatter_tokens_cpu(ptr<const void>(src), ptr<const int64_t>(index), ptr<void>(out), B, M, n, C, es);
      },
      py::call_guard<py::gil_scoped_release>());
}
