// Monitored forwards on the CPU: per-channel reductions (../monitor.h) of
// the values the forward stores. A task takes a block of rows by a block of
// columns and walks it in tiles of kTileRows rows: the elementwise engine's
// segment code computes each tile row (into L1 scratch, streamed on to the
// output past the last-level cache), and each column vector's statistics
// are taken across the tile's rows in registers. Tall tensors split rows
// across threads, each row block into its own partials, merged in order
// after; others split columns, each task then owning its channels in
// stats. No atomics, no shared writes, and the same sums from run to run at
// one thread count. (The quantized outputs' row-major spans, grouped.h,
// would give each thread partials of the whole width to zero and merge on
// every call.)
#pragma once

#include "../monitor.h"
#include "elementwise.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

namespace fused_acts::cpu {

// A block's counts and sums are exact, or nearly, in opmath over this many
// rows (float counts are exact to 2^24), then go to float64.
constexpr int64_t kFlushRows = 256;
// A tile of kTileRows rows by kColumnBlock columns, with its opmath
// copies, stays in L1 while its statistics are taken.
constexpr int64_t kColumnBlock = 2048;
constexpr int64_t kTileRows = 8;

// One task's statistics of its n columns, over the rows since the last flush.
template <typename value_t>
struct ChannelBlock {
  // Each task resets the columns it takes (reset), so they start uninitialized.
  std::unique_ptr<value_t[]> active, saturated, sum, sumsq, amax;
  std::vector<int64_t> histogram;

  ChannelBlock(int64_t span, int64_t bins)
      : active(new value_t[span]),
        saturated(new value_t[span]),
        sum(new value_t[span]),
        sumsq(new value_t[span]),
        amax(new value_t[span]),
        histogram(bins) {}

  void reset(int64_t n) {
    for (auto* v : {&active, &saturated, &sum, &sumsq, &amax}) std::fill_n(v->get(), n, value_t(0));
  }

  // g[r], h[r]: the n values of each of `tiles` rows. Each vector of
  // columns keeps its statistics in registers across the rows.
  // The statistics are the block's columns offset.. offset + n.
  void add(const value_t* const* g, const value_t* const* h, int64_t tiles, int64_t offset, int64_t n,
           const MonitorArgs& ma) {
    using Vec = Vectorized<value_t>;
    const Vec zero(0), one(1), lo(ma.saturation.lo), hi(ma.saturation.hi);
    value_t* const amax = this->amax.get() + offset;
    value_t* const active = this->active.get() + offset;
    value_t* const saturated = this->saturated.get() + offset;
    value_t* const sum = this->sum.get() + offset;
    value_t* const sumsq = this->sumsq.get() + offset;
    for (int64_t i = 0; i < n; i += Vec::size()) {
      // Partial loads pad with zeros; partial stores never write them.
      const int64_t count = std::min<int64_t>(Vec::size(), n - i);
      Vec amax_v = Vec::loadu(amax + i, count), active_v = Vec::loadu(active + i, count);
      Vec saturated_v = Vec::loadu(saturated + i, count), sum_v = Vec::loadu(sum + i, count);
      Vec sumsq_v = Vec::loadu(sumsq + i, count);
      for (int64_t r = 0; r < tiles; ++r) {
        const Vec hv = Vec::loadu(h[r] + i, count), gv = Vec::loadu(g[r] + i, count);
        amax_v = at::vec::maximum(amax_v, hv.abs());  // keeps a nan, as nan_max does
        active_v = active_v + ((gv > zero) & one);
        saturated_v = saturated_v + (((gv <= lo) | (gv > hi)) & one);
        sum_v = sum_v + hv;
        sumsq_v = at::vec::fmadd(hv, hv, sumsq_v);
      }
      amax_v.store(amax + i, count);
      active_v.store(active + i, count);
      saturated_v.store(saturated + i, count);
      sum_v.store(sum + i, count);
      sumsq_v.store(sumsq + i, count);
    }
    for (int64_t r = 0; r < tiles && !histogram.empty(); ++r) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t bin = histogram_bin(g[r][i], static_cast<int64_t>(histogram.size()));
        if (bin >= 0) ++histogram[bin];
      }
    }
  }

  // Adds the counts and sums to stat (the [kNumStats, channels] rows of
  // columns col..col + n), and starts them again.
  void flush(double* stat, int64_t channels, int64_t col, int64_t n) {
    move_into(stat + kActive * channels + col, active.get(), n);
    move_into(stat + kSaturated * channels + col, saturated.get(), n);
    move_into(stat + kSum * channels + col, sum.get(), n);
    move_into(stat + kSumsq * channels + col, sumsq.get(), n);
  }

  // restrict: the compiler then vectorizes these loops.
  static void move_into(double* __restrict dest, value_t* __restrict from, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      dest[i] += from[i];
      from[i] = value_t(0);
    }
  }

  void merge_amax(double* stat, int64_t channels, int64_t col, int64_t n) const {
    double* __restrict dest = stat + kAmax * channels + col;
    const value_t* __restrict from = amax.get();
    for (int64_t i = 0; i < n; ++i) dest[i] = nan_max(static_cast<double>(from[i]), dest[i]);
  }
};

// n values from p (element stride `stride`) in opmath: p itself where it is
// already, else converted (or gathered) into buffer.
template <typename value_t, typename scalar_t>
const value_t* in_opmath(const scalar_t* p, int64_t stride, int64_t n, value_t* buffer) {
  if constexpr (std::is_same_v<scalar_t, value_t>) {
    if (stride == 1) return p;
  }
  if (stride == 1) {
    at::vec::convert(p, buffer, n);
  } else {
    for (int64_t i = 0; i < n; ++i) buffer[i] = static_cast<value_t>(p[i * stride]);
  }
  return buffer;
}

// How a monitored launch splits its work: tasks of a block of rows by a
// block of columns. Tall tensors split rows, each row block's statistics
// its own partials (merged in order after); others split columns, each
// task then owning its channels in stats. Either way a thread reads rows
// front to back, which keeps the hardware prefetchers streaming.
struct MonitorTasks {
  int64_t row_blocks, rows_per_block;
  int64_t col_blocks, cols_per_block;

  MonitorTasks(int64_t rows, int64_t cols, int64_t threads, int64_t vec) {
    const bool split_rows = rows >= threads * kSplitRowsFrom;
    row_blocks = split_rows ? threads : 1;
    rows_per_block = (rows + row_blocks - 1) / row_blocks;
    row_blocks = (rows + rows_per_block - 1) / rows_per_block;
    col_blocks = split_rows ? 1 : std::min(threads, (cols + vec - 1) / vec);
    cols_per_block = ((cols + col_blocks - 1) / col_blocks + vec - 1) / vec * vec;
    col_blocks = (cols + cols_per_block - 1) / cols_per_block;
  }
  // Rows per thread from which rows split: below it, per-thread partials
  // of the whole width would cost more to zero and merge than they save.
  static constexpr int64_t kSplitRowsFrom = 64;
};

// args: rows of ma.channels columns (uncollapsed); Fn a forward functor.
template <typename scalar_t, int NIn, typename Fn>
void monitor(const ElementwiseArgs<NIn, 1>& args, const Fn& fn, const MonitorArgs& ma) {
  using value_t = at::opmath_type<scalar_t>;
  constexpr int kGate = Fn::kGate;
  const int64_t rows = args.rows, cols = args.cols;
  const int64_t threads = rows * cols >= 2 * kGrainSize ? at::get_num_threads() : 1;
  const MonitorTasks tasks(rows, cols, threads, Vectorized<value_t>::size());
  std::vector<double> partials(tasks.row_blocks > 1 ? tasks.row_blocks * kNumStats * cols : 0);
  // As the elementwise engine does past the last-level cache: a tile is
  // computed into L1 scratch, read there, and streamed to the output.
  const bool bypass_cache = (NIn + 1) * rows * cols * static_cast<int64_t>(sizeof(scalar_t)) >= nontemporal_min_bytes();
  std::mutex histogram_mutex;
  const int64_t num_tasks = tasks.row_blocks * tasks.col_blocks;

  with_pairs<Fn>(args, [&](auto in_pair, auto) {
    at::parallel_for(0, num_tasks, threads > 1 ? 1 : num_tasks, [&](int64_t begin, int64_t end) {
      ChannelBlock<value_t> block(tasks.cols_per_block, ma.bins);
      // A tile's rows: their values in opmath where they must be converted
      // or gathered, and their scratch; left uninitialized, as each is
      // written before it is read (zeroing them would cost a small call
      // more than its work).
      const int64_t pitch = std::min(kColumnBlock, tasks.cols_per_block), tile = kTileRows * pitch;
      const std::unique_ptr<value_t[]> values(new value_t[tile]), gate(new value_t[tile]);
      const std::unique_ptr<scalar_t[]> scratch(new scalar_t[bypass_cache ? tile : 0]);
      const value_t* h[kTileRows];
      const value_t* g[kTileRows];
      for (int64_t task = begin; task < end; ++task) {
        const int64_t row_block = task / tasks.col_blocks;
        const int64_t first_col = task % tasks.col_blocks * tasks.cols_per_block;
        const int64_t width = std::min(tasks.cols_per_block, cols - first_col);
        const int64_t first_row = row_block * tasks.rows_per_block;
        const int64_t end_row = std::min(rows, first_row + tasks.rows_per_block);
        double* const stat = tasks.row_blocks > 1 ? partials.data() + row_block * kNumStats * cols : ma.stats;
        block.reset(width);
        for (int64_t tile_row = first_row; tile_row < end_row; tile_row += kTileRows) {
          const int64_t tiles = std::min(kTileRows, end_row - tile_row);
          // Tiles of kTileRows rows by kColumnBlock columns, across the task's width.
          for (int64_t offset = 0; offset < width; offset += kColumnBlock) {
            const int64_t col = first_col + offset, n = std::min(kColumnBlock, width - offset);
            for (int64_t r = 0; r < tiles; ++r) {
              const int64_t row = tile_row + r;
              const scalar_t* in[NIn];
              for (int k = 0; k < NIn; ++k) {
                in[k] = static_cast<const scalar_t*>(args.in[k]) + row * args.in_row_stride[k] +
                        col * args.in_col_stride(k);
              }
              scalar_t* const out_row = static_cast<scalar_t*>(args.out[0]) + row * args.out_row_stride[0] + col;
              scalar_t* const out[1] = {bypass_cache ? scratch.get() + r * pitch : out_row};
              run_segment<scalar_t, decltype(in_pair)::value, -1>(fn, in, out, n, /*bypass_cache=*/false);
              h[r] = in_opmath(out[0], 1, n, values.get() + r * pitch);
              g[r] = in_opmath(in[kGate], args.in_col_stride(kGate), n, gate.get() + r * pitch);
              if (bypass_cache) copy_nontemporal(out[0], out_row, n);
            }
            block.add(g, h, tiles, offset, n, ma);
          }
          if ((tile_row + tiles - first_row) % kFlushRows == 0) block.flush(stat, cols, first_col, width);
        }
        block.flush(stat, cols, first_col, width);
        block.merge_amax(stat, cols, first_col, width);
      }
      if (bypass_cache) nontemporal_fence();
      if (ma.bins > 0) {
        const std::lock_guard<std::mutex> lock(histogram_mutex);
        for (int64_t b = 0; b < ma.bins; ++b) ma.histogram[b] += static_cast<double>(block.histogram[b]);
      }
    });
  });
  // The row blocks' partials, in order.
  for (int64_t b = 0; b < (tasks.row_blocks > 1 ? tasks.row_blocks : 0); ++b) {
    const double* const partial = partials.data() + b * kNumStats * cols;
    for (int64_t i = 0; i < cols; ++i) {
      for (int s : {kActive, kSaturated, kSum, kSumsq}) ma.stats[s * cols + i] += partial[s * cols + i];
      double& amax = ma.stats[kAmax * cols + i];
      amax = nan_max(partial[kAmax * cols + i], amax);
    }
  }
  for (int64_t i = 0; i < cols; ++i) ma.stats[kRows * cols + i] += static_cast<double>(rows);
}

}  // namespace fused_acts::cpu
