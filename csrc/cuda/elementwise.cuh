// The CUDA engine: runs any functor from elementwise_functors.h over
// ElementwiseArgs with 16-byte loads and stores and 64-bit indexing.
// Opmath is float for half types. Pairs (interleaved operands) take element
// loads: neighbouring threads' pairs still coalesce.
//
// Like ATen's vectorized_elementwise_kernel, each thread handles a fixed few
// elements and the grid covers the tensor, so the block scheduler balances
// the SMs. A grid-stride loop sized to "full occupancy" cannot: most kernels
// need over 32 registers, so fewer blocks fit per SM than the device maximum
// assumes, and the overflow runs as a partly empty second wave.
#pragma once

#include "../elementwise_args.h"
#include "scalar_math.h"

#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>

#include <cstdint>
#include <limits>

namespace fused_acts::cuda {

constexpr int kThreads = 128;

// ATen's choice for 16- and 32-bit types. Double takes one pack: its erfc is
// a function call, and the values of further packs held across it spill.
template <typename scalar_t>
constexpr int kElemsPerThread = sizeof(scalar_t) == 8 ? 2 : 8;

template <typename scalar_t, int N>
struct alignas(sizeof(scalar_t) * N) Pack {
  scalar_t v[N];
};

// The row of a chunk, for row-strided operands. A 64-bit division is a long
// subroutine on the GPU, so while chunk indices fit in 31 bits (below 2^34
// elements) a multiply-shift by a precomputed magic number does it.
struct RowOfChunk {
  int64_t chunks_per_row;
  bool use_magic;
  at::cuda::detail::IntDivider<uint32_t> magic;

  RowOfChunk(int64_t chunks_per_row, int64_t num_chunks)
      : chunks_per_row(chunks_per_row), use_magic(num_chunks <= std::numeric_limits<int32_t>::max()) {
    if (use_magic) magic = at::cuda::detail::IntDivider<uint32_t>(static_cast<uint32_t>(chunks_per_row));
  }
  __device__ int64_t operator()(int64_t chunk) const {
    return use_magic ? magic.div(static_cast<uint32_t>(chunk)) : chunk / chunks_per_row;
  }
};

// Chunks of VEC elements lie in one row. With kSingleRow the operands are
// dense and the last chunk may be partial; otherwise cols % VEC == 0, so no
// chunk is.
template <int VEC, bool kSingleRow>
struct ChunkPosition {
  int64_t row = 0, col = 0;
  int count = 0;  // 0 past the end

  ChunkPosition() = default;
  __device__ ChunkPosition(int64_t chunk, int64_t num_chunks, int64_t cols, const RowOfChunk& row_of) {
    if (chunk >= num_chunks) return;
    if constexpr (kSingleRow) {
      col = chunk * VEC;
      count = static_cast<int>(min(static_cast<int64_t>(VEC), cols - col));
    } else {
      row = row_of(chunk);
      col = (chunk - row * row_of.chunks_per_row) * VEC;
      count = VEC;
    }
  }
};

// col_stride is 1 where VEC > 1.
template <typename scalar_t, int VEC>
__device__ void load_chunk(Pack<scalar_t, VEC>& pack, const void* base, int64_t row_stride, int64_t col_stride,
                           int64_t row, int64_t col, int count) {
  const scalar_t* ptr = static_cast<const scalar_t*>(base) + row * row_stride + col * col_stride;
  if (count == VEC) {
    pack = *reinterpret_cast<const Pack<scalar_t, VEC>*>(ptr);
  } else {
    // j stays a compile-time index (count is only a predicate), so the
    // pack stays in registers instead of moving to local memory.
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      if (j < count) pack.v[j] = ptr[j];
    }
  }
}

template <typename scalar_t, int VEC>
__device__ void store_chunk(const Pack<scalar_t, VEC>& pack, void* base, int64_t row_stride, int64_t col_stride,
                            int64_t row, int64_t col, int count) {
  scalar_t* ptr = static_cast<scalar_t*>(base) + row * row_stride + col * col_stride;
  if (count == VEC) {
    *reinterpret_cast<Pack<scalar_t, VEC>*>(ptr) = pack;
  } else {
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      if (j < count) ptr[j] = pack.v[j];
    }
  }
}

template <typename scalar_t, int VEC, bool kSingleRow, int NIn, int NOut, typename Fn>
__global__ void __launch_bounds__(kThreads)
    elementwise_kernel(ElementwiseArgs<NIn, NOut> args, RowOfChunk row_of, int64_t num_chunks, Fn fn) {
  using opmath_t = at::opmath_type<scalar_t>;
  using Position = ChunkPosition<VEC, kSingleRow>;
  constexpr int kChunks = kElemsPerThread<scalar_t> / VEC;
  // Consecutive threads take consecutive chunks, so every access coalesces.
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kThreads * kChunks + threadIdx.x;

  // All loads are issued before any math, to keep kChunks loads in flight.
  Position pos[kChunks];
  Pack<scalar_t, VEC> in[kChunks][NIn];
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    pos[c] = Position(first + c * kThreads, num_chunks, args.cols, row_of);
    if (pos[c].count == 0) continue;
#pragma unroll
    for (int k = 0; k < NIn; ++k)
      load_chunk(in[c][k], args.in[k], args.in_row_stride[k], args.in_col_stride(k), pos[c].row, pos[c].col,
                 pos[c].count);
  }
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    if (pos[c].count == 0) continue;
    Pack<scalar_t, VEC> out[NOut];
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      opmath_t x[NIn], y[NOut];
#pragma unroll
      for (int k = 0; k < NIn; ++k) x[k] = static_cast<opmath_t>(in[c][k].v[j]);
      fn(x, y);
#pragma unroll
      for (int k = 0; k < NOut; ++k) out[k].v[j] = static_cast<scalar_t>(y[k]);
    }
#pragma unroll
    for (int k = 0; k < NOut; ++k)
      store_chunk(out[k], args.out[k], args.out_row_stride[k], args.out_col_stride(k), pos[c].row, pos[c].col,
                  pos[c].count);
  }
}

// Whether every operand is unit-stride and every row starts on a VEC-element boundary.
template <int VEC, typename scalar_t, int NIn, int NOut>
bool rows_aligned(const ElementwiseArgs<NIn, NOut>& args) {
  constexpr int64_t kBytes = sizeof(scalar_t) * VEC;
  auto aligned = [&](const void* ptr, int64_t row_stride) {
    return reinterpret_cast<uintptr_t>(ptr) % kBytes == 0 && (args.rows == 1 || row_stride % VEC == 0);
  };
  bool ok = args.pairs.in < 0 && args.pairs.out < 0 && (args.rows == 1 || args.cols % VEC == 0);
  for (int k = 0; k < NIn; ++k) ok = ok && aligned(args.in[k], args.in_row_stride[k]);
  for (int k = 0; k < NOut; ++k) ok = ok && aligned(args.out[k], args.out_row_stride[k]);
  return ok;
}

template <typename scalar_t, int VEC, int NIn, int NOut, typename Fn>
void launch_with_vec(const ElementwiseArgs<NIn, NOut>& args, const Fn& fn) {
  const int64_t chunks_per_row = (args.cols + VEC - 1) / VEC;
  const int64_t num_chunks = chunks_per_row * args.rows;
  constexpr int64_t kChunksPerBlock = static_cast<int64_t>(kThreads) * (kElemsPerThread<scalar_t> / VEC);
  const int64_t blocks = (num_chunks + kChunksPerBlock - 1) / kChunksPerBlock;
  TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(), "fused_acts: tensor too large for one launch");
  const RowOfChunk row_of(chunks_per_row, num_chunks);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (args.rows == 1) {
    elementwise_kernel<scalar_t, VEC, true><<<blocks, kThreads, 0, stream>>>(args, row_of, num_chunks, fn);
  } else {
    elementwise_kernel<scalar_t, VEC, false><<<blocks, kThreads, 0, stream>>>(args, row_of, num_chunks, fn);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, int NIn, int NOut, typename Fn>
void elementwise(const ElementwiseArgs<NIn, NOut>& args, const Fn& fn) {
  constexpr int kVec = 16 / sizeof(scalar_t);
  static_assert(kElemsPerThread<scalar_t> % kVec == 0, "a thread's elements are whole packs");
  // Pairs take element loads: a paired-only functor needs no vector path.
  if constexpr (!Fn::kPairedOnly) {
    if (rows_aligned<kVec, scalar_t>(args)) return launch_with_vec<scalar_t, kVec>(args, fn);
  }
  launch_with_vec<scalar_t, 1>(args, fn);
}

}  // namespace fused_acts::cuda
