// Monitored forwards on CUDA: a thread owns one channel (column) over a
// block of rows, computing and storing h as the elementwise engine does and
// keeping its channel's statistics (../monitor.h) in registers; at the end
// it adds them to the stats tensor with atomics, one per statistic. The
// block's histogram counts in shared memory first. Neighbouring threads
// take neighbouring columns of a row, so loads and stores coalesce.
#pragma once

#include "../monitor.h"
#include "elementwise.cuh"

namespace fused_acts::cuda {

// Non-negative doubles, and nan above them all, order as their bits do.
__device__ inline void atomic_max_non_negative(double* address, double value) {
  atomicMax(reinterpret_cast<unsigned long long*>(address),
            static_cast<unsigned long long>(__double_as_longlong(value)));
}

template <typename scalar_t, int NIn, typename Fn>
__global__ void __launch_bounds__(kThreads)
    monitor_kernel(ElementwiseArgs<NIn, 1> args, MonitorArgs ma, int64_t rows_per_block, Fn fn) {
  using opmath_t = at::opmath_type<scalar_t>;
  extern __shared__ unsigned int block_histogram[];
  for (int64_t b = threadIdx.x; b < ma.bins; b += kThreads) block_histogram[b] = 0;
  __syncthreads();

  const int64_t col = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t first_row = static_cast<int64_t>(blockIdx.y) * rows_per_block;
  const int64_t end_row = min(args.rows, first_row + rows_per_block);
  if (col < args.cols) {
    unsigned int active = 0, saturated = 0;
    opmath_t amax = 0;
    double sum = 0, sumsq = 0;
    for (int64_t row = first_row; row < end_row; ++row) {
      opmath_t x[NIn], y[1];
#pragma unroll
      for (int k = 0; k < NIn; ++k) {
        const scalar_t* in = static_cast<const scalar_t*>(args.in[k]);
        x[k] = static_cast<opmath_t>(in[row * args.in_row_stride[k] + col * args.in_col_stride(k)]);
      }
      fn(x, y);
      const scalar_t stored = static_cast<scalar_t>(y[0]);
      static_cast<scalar_t*>(args.out[0])[row * args.out_row_stride[0] + col] = stored;
      const opmath_t h = static_cast<opmath_t>(stored), g = x[Fn::kGate];
      const opmath_t a = h < 0 ? -h : h;
      amax = nan_max(a, amax);
      active += g > opmath_t(0);
      saturated += is_saturated(g, ma.saturation);
      sum += static_cast<double>(h);
      sumsq += static_cast<double>(h) * static_cast<double>(h);
      if (ma.bins > 0) {
        const int64_t bin = histogram_bin(g, ma.bins);
        if (bin >= 0) atomicAdd(&block_histogram[bin], 1u);
      }
    }
    const int64_t c = ma.channels;
    double* const stat = ma.stats + col;
    if (blockIdx.y == 0) atomicAdd(stat + kRows * c, static_cast<double>(args.rows));
    atomicAdd(stat + kActive * c, static_cast<double>(active));
    atomicAdd(stat + kSaturated * c, static_cast<double>(saturated));
    atomic_max_non_negative(stat + kAmax * c, static_cast<double>(amax));
    atomicAdd(stat + kSum * c, sum);
    atomicAdd(stat + kSumsq * c, sumsq);
  }
  __syncthreads();
  for (int64_t b = threadIdx.x; b < ma.bins; b += kThreads) {
    if (block_histogram[b] != 0) atomicAdd(ma.histogram + b, static_cast<double>(block_histogram[b]));
  }
}

// About this many blocks fill an H100's 132 SMs several times over.
constexpr int64_t kMonitorBlocks = 2048;

// args: rows of ma.channels columns (uncollapsed); Fn a forward functor.
template <typename scalar_t, int NIn, typename Fn>
void monitor(const ElementwiseArgs<NIn, 1>& args, const Fn& fn, const MonitorArgs& ma) {
  const int64_t col_blocks = (args.cols + kThreads - 1) / kThreads;
  constexpr int64_t kMaxRowBlocks = 65535;  // gridDim.y's limit
  TORCH_CHECK(col_blocks <= std::numeric_limits<int32_t>::max(), "fused_acts: tensor too large for one launch");
  const int64_t wanted_row_blocks = std::max<int64_t>(1, kMonitorBlocks / col_blocks);
  int64_t rows_per_block = (args.rows + wanted_row_blocks - 1) / wanted_row_blocks;
  rows_per_block = std::max(rows_per_block, (args.rows + kMaxRowBlocks - 1) / kMaxRowBlocks);
  const int64_t row_blocks = (args.rows + rows_per_block - 1) / rows_per_block;
  const dim3 grid(static_cast<unsigned int>(col_blocks), static_cast<unsigned int>(row_blocks));
  const size_t shared = static_cast<size_t>(ma.bins) * sizeof(unsigned int);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  monitor_kernel<scalar_t><<<grid, kThreads, shared, stream>>>(args, ma, rows_per_block, fn);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace fused_acts::cuda
