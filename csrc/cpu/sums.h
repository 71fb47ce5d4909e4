// Elementwise ops that also sum terms over every element, in the same pass:
// the gradients of an activation's coefficients (xIELU's), beside its
// input's. The elements split into fixed blocks, each summed on its own and
// the blocks' sums added in order after, so that the result is the same
// from run to run at any thread count. Within a block, lanes sum in opmath
// vectors for kFlushElements elements at a time, then in float64.
#pragma once

#include "elementwise.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

namespace fused_acts::cpu {

constexpr int64_t kSumBlock = 16384;
constexpr int64_t kFlushElements = 1024;

// n elements of a segment: outputs stored, terms added to block_sums.
template <typename scalar_t, int NIn, int NOut, int NSums, typename Fn>
__attribute__((flatten)) inline void sum_segment(const Fn& fn, const scalar_t* const (&in)[NIn],
                                                 scalar_t* const (&out)[NOut], int64_t n, double (&block_sums)[NSums]) {
  using Vec = Vectorized<scalar_t>;
  using opmath_t = at::opmath_type<scalar_t>;
  using OpVec = Vectorized<opmath_t>;
  for (int64_t start = 0; start < n; start += kFlushElements) {
    const int64_t stop = std::min(n, start + kFlushElements);
    OpVec acc[NSums];
    for (int s = 0; s < NSums; ++s) acc[s] = OpVec(opmath_t(0));
    // Partial loads pad with zeros, whose terms are grad_out·slope = 0.
    for (int64_t i = start; i < stop; i += Vec::size()) {
      const int64_t count = std::min<int64_t>(Vec::size(), stop - i);
      Vec in_vec[NIn], out_vec[NOut];
      for (int k = 0; k < NIn; ++k) in_vec[k] = Vec::loadu(in[k] + i, count);
      if constexpr (std::is_same_v<opmath_t, scalar_t>) {
        OpVec terms[NSums];
        fn(in_vec, out_vec, terms);
        for (int s = 0; s < NSums; ++s) acc[s] = acc[s] + terms[s];
      } else {
        OpVec lo[NIn], hi[NIn], out_lo[NOut], out_hi[NOut], terms_lo[NSums], terms_hi[NSums];
        for (int k = 0; k < NIn; ++k) std::tie(lo[k], hi[k]) = at::vec::convert_to_float<scalar_t>(in_vec[k]);
        fn(lo, out_lo, terms_lo);
        fn(hi, out_hi, terms_hi);
        for (int k = 0; k < NOut; ++k) out_vec[k] = narrow_from_float<scalar_t>(out_lo[k], out_hi[k]);
        for (int s = 0; s < NSums; ++s) acc[s] = acc[s] + terms_lo[s] + terms_hi[s];
      }
      for (int k = 0; k < NOut; ++k) out_vec[k].store(out[k] + i, count);
    }
    for (int s = 0; s < NSums; ++s) {
      __at_align__ opmath_t lanes[OpVec::size()];
      acc[s].store(lanes);
      for (int l = 0; l < OpVec::size(); ++l) block_sums[s] += static_cast<double>(lanes[l]);
    }
  }
}

// fn over args, as elementwise() runs it, with fn's Fn::kSums terms summed into sums.
template <typename scalar_t, int NIn, int NOut, typename Fn>
void elementwise_sums(const ElementwiseArgs<NIn, NOut>& args, const Fn& fn, double* sums) {
  constexpr int kSums = Fn::kSums;
  const int64_t cols = args.cols, total = args.rows * cols;
  const int64_t blocks = (total + kSumBlock - 1) / kSumBlock;
  std::vector<std::array<double, kSums>> partials(blocks);
  at::parallel_for(0, blocks, std::max<int64_t>(1, kGrainSize / kSumBlock), [&](int64_t first, int64_t last) {
    for (int64_t block = first; block < last; ++block) {
      double block_sums[kSums] = {};
      const int64_t end = std::min(total, (block + 1) * kSumBlock);
      // A block may start and end mid-row; walk it one row piece at a time.
      for (int64_t i = block * kSumBlock; i < end;) {
        const int64_t row = i / cols, col = i % cols;
        const int64_t n = std::min(cols - col, end - i);
        const scalar_t* in[NIn];
        scalar_t* out[NOut];
        for (int k = 0; k < NIn; ++k)
          in[k] = static_cast<const scalar_t*>(args.in[k]) + row * args.in_row_stride[k] + col;
        for (int k = 0; k < NOut; ++k)
          out[k] = static_cast<scalar_t*>(args.out[k]) + row * args.out_row_stride[k] + col;
        sum_segment<scalar_t>(fn, in, out, n, block_sums);
        i += n;
      }
      std::copy(block_sums, block_sums + kSums, partials[block].begin());
    }
  });
  std::fill(sums, sums + kSums, 0.0);
  for (const auto& block_sums : partials) {
    for (int s = 0; s < kSums; ++s) sums[s] += block_sums[s];
  }
}

}  // namespace fused_acts::cpu
