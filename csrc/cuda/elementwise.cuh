// The CUDA engine: runs any functor from elementwise_functors.h over
// ElementwiseArgs with 16-byte loads and stores, 64-bit indexing and a
// grid-stride loop sized to fill the GPU. Opmath is float for half types.
#pragma once

#include "../activations.h"
#include "../elementwise_args.h"

#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace fused_acts::cuda {

constexpr int kThreads = 256;

template <typename scalar_t, int N>
struct alignas(sizeof(scalar_t) * N) Pack {
  scalar_t v[N];
};

// Each thread handles chunks of VEC elements that lie in one row. With
// kSingleRow the operands are dense and no row arithmetic is needed; the
// last chunk may be partial. Otherwise cols % VEC == 0, so chunks never are.
template <typename scalar_t, int VEC, bool kSingleRow, int NIn, int NOut, typename Fn>
__global__ void elementwise_kernel(ElementwiseArgs<NIn, NOut> args, int64_t chunks_per_row, int64_t num_chunks, Fn fn) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t chunk = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; chunk < num_chunks; chunk += step) {
    int64_t row = 0, col = chunk * VEC;
    if constexpr (!kSingleRow) {
      row = chunk / chunks_per_row;
      col = (chunk - row * chunks_per_row) * VEC;
    }
    const int64_t count = kSingleRow ? min(static_cast<int64_t>(VEC), args.cols - col) : VEC;

    Pack<scalar_t, VEC> in[NIn], out[NOut];
    if (count == VEC) {
#pragma unroll
      for (int k = 0; k < NIn; ++k) {
        in[k] = *reinterpret_cast<const Pack<scalar_t, VEC>*>(
            static_cast<const scalar_t*>(args.in[k]) + row * args.in_row_stride[k] + col);
      }
    } else {
      // j stays a compile-time index (count is only a predicate), so the
      // packs stay in registers instead of moving to local memory.
#pragma unroll
      for (int k = 0; k < NIn; ++k) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          if (j < count) in[k].v[j] = static_cast<const scalar_t*>(args.in[k])[row * args.in_row_stride[k] + col + j];
        }
      }
    }
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      opmath_t x[NIn], y[NOut];
#pragma unroll
      for (int k = 0; k < NIn; ++k) x[k] = static_cast<opmath_t>(in[k].v[j]);
      fn(x, y);
#pragma unroll
      for (int k = 0; k < NOut; ++k) out[k].v[j] = static_cast<scalar_t>(y[k]);
    }
    if (count == VEC) {
#pragma unroll
      for (int k = 0; k < NOut; ++k) {
        *reinterpret_cast<Pack<scalar_t, VEC>*>(
            static_cast<scalar_t*>(args.out[k]) + row * args.out_row_stride[k] + col) = out[k];
      }
    } else {
#pragma unroll
      for (int k = 0; k < NOut; ++k) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          if (j < count) static_cast<scalar_t*>(args.out[k])[row * args.out_row_stride[k] + col + j] = out[k].v[j];
        }
      }
    }
  }
}

// Whether every row of every operand starts on a VEC-element boundary.
template <int VEC, typename scalar_t, int NIn, int NOut>
bool rows_aligned(const ElementwiseArgs<NIn, NOut>& args) {
  constexpr int64_t kBytes = sizeof(scalar_t) * VEC;
  auto aligned = [&](const void* ptr, int64_t row_stride) {
    return reinterpret_cast<uintptr_t>(ptr) % kBytes == 0 && (args.rows == 1 || row_stride % VEC == 0);
  };
  bool ok = args.rows == 1 || args.cols % VEC == 0;
  for (int k = 0; k < NIn; ++k) ok = ok && aligned(args.in[k], args.in_row_stride[k]);
  for (int k = 0; k < NOut; ++k) ok = ok && aligned(args.out[k], args.out_row_stride[k]);
  return ok;
}

template <typename scalar_t, int VEC, int NIn, int NOut, typename Fn>
void launch_with_vec(const ElementwiseArgs<NIn, NOut>& args, const Fn& fn) {
  const int64_t chunks_per_row = (args.cols + VEC - 1) / VEC;
  const int64_t num_chunks = chunks_per_row * args.rows;
  // Enough resident blocks to fill every SM once; the grid-stride loop does the rest.
  const int device = c10::cuda::current_device();
  int sm_count = 0, threads_per_sm = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device));
  const int64_t max_blocks = static_cast<int64_t>(sm_count) * (threads_per_sm / kThreads);
  const int64_t blocks = std::min((num_chunks + kThreads - 1) / kThreads, max_blocks);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (args.rows == 1) {
    elementwise_kernel<scalar_t, VEC, true><<<blocks, kThreads, 0, stream>>>(args, chunks_per_row, num_chunks, fn);
  } else {
    elementwise_kernel<scalar_t, VEC, false><<<blocks, kThreads, 0, stream>>>(args, chunks_per_row, num_chunks, fn);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, int NIn, int NOut, typename Fn>
void elementwise(const ElementwiseArgs<NIn, NOut>& args, const Fn& fn) {
  constexpr int kVec = 16 / sizeof(scalar_t);
  if (rows_aligned<kVec, scalar_t>(args)) {
    launch_with_vec<scalar_t, kVec>(args, fn);
  } else {
    launch_with_vec<scalar_t, 1>(args, fn);
  }
}

}  // namespace fused_acts::cuda
