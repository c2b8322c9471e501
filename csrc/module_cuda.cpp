// fmae._C_cuda: the CUDA extension, the GPU mirror of module.cpp. Functions take
// device pointers (tensor.data_ptr()), shapes and the caller's stream
// (torch.cuda.current_stream().cuda_stream), all as Python ints; the Python side
// (fmae/ops/) owns tensors, dtypes and validation. CUDA errors raise RuntimeError.
#include <pybind11/pybind11.h>

#include <string>

#include "ops_cuda.h"

namespace py = pybind11;

namespace {

template <typename T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "FMAE CUDA kernels over raw device buffers, launched on the caller's stream";
  m.def(
      "region_histogram",
      [](uintptr_t maps, uintptr_t out, int64_t B, int64_t T, int64_t H, int64_t W, int64_t tt, int64_t th,
         int64_t tw, int64_t K, uintptr_t stream) {
        fmae::region_histogram_cuda(ptr<const uint8_t>(maps), ptr<float>(out), B, T, H, W, tt, th, tw, K, stream);
      },
      py::call_guard<py::gil_scoped_release>());
  // Strides are the strided operand's (x, src), in elements: (batch, token, channel).
  m.def(
      "gather_tokens",
      [](uintptr_t x, int64_t sb, int64_t sn, int64_t sc, uintptr_t index, uintptr_t out, int64_t B, int64_t N,
         int64_t M, int64_t C, int64_t es, uintptr_t stream) {
        fmae::gather_tokens_cuda(ptr<const void>(x), {sb, sn, sc}, ptr<const int64_t>(index), ptr<void>(out), B,
                                 N, M, C, es, stream);
      },
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "scatter_tokens",
      [](uintptr_t src, int64_t sb, int64_t sm, int64_t sc, uintptr_t index, uintptr_t out, int64_t B, int64_t M,
         int64_t n, int64_t C, int64_t es, uintptr_t stream) {
        fmae::scatter_tokens_cuda(ptr<const void>(src), {sb, sm, sc}, ptr<const int64_t>(index), ptr<void>(out),
                                  B, M, n, C, es, stream);
      },
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "decoder_input",
      [](uintptr_t tokens, uintptr_t mask_token, uintptr_t pos_table, uintptr_t index, uintptr_t out, int64_t B,
         int64_t V, int64_t L, int64_t N, int64_t C, const std::string& dtype, const std::string& pos_dtype,
         uintptr_t stream) {
        fmae::decoder_input_cuda(ptr<const void>(tokens), ptr<const void>(mask_token), ptr<const void>(pos_table),
                                 ptr<const int64_t>(index), ptr<void>(out), B, V, L, N, C, dtype, pos_dtype,
                                 stream);
      },
      py::call_guard<py::gil_scoped_release>());
}
