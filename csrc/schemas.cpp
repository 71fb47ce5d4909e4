// Every op's schema. Kernels register per dispatch key in cpu/kernels.cpp and
// cuda/kernels.cu; autograd and fake tensors are registered in fused_acts/ops.py.
#include <torch/library.h>

TORCH_LIBRARY(fused_acts, m) {
  m.def("gelu(Tensor x, str approximate=\"none\") -> Tensor");
  m.def("gelu_backward(Tensor grad, Tensor x, str approximate=\"none\") -> Tensor");
  m.def("silu(Tensor x) -> Tensor");
  m.def("silu_backward(Tensor grad, Tensor x) -> Tensor");
  m.def("mish(Tensor x) -> Tensor");
  m.def("mish_backward(Tensor grad, Tensor x) -> Tensor");
  m.def("swiglu(Tensor gate, Tensor up) -> Tensor");
  m.def("swiglu_backward(Tensor grad, Tensor gate, Tensor up) -> (Tensor, Tensor)");
  m.def("swiglu_packed(Tensor x) -> Tensor");
  m.def("swiglu_packed_backward(Tensor grad, Tensor x) -> Tensor");
  m.def("geglu(Tensor gate, Tensor up, str approximate=\"none\") -> Tensor");
  m.def("geglu_backward(Tensor grad, Tensor gate, Tensor up, str approximate=\"none\") -> (Tensor, Tensor)");
  m.def("geglu_packed(Tensor x, str approximate=\"none\") -> Tensor");
  m.def("geglu_packed_backward(Tensor grad, Tensor x, str approximate=\"none\") -> Tensor");
}
