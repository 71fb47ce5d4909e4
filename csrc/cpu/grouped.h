// The CPU engine's second shape of work: a functor's output reduced group by
// group before it is stored. Each row is cut into groups of `group`
// consecutive elements (a row's last one may be shorter); a thread computes
// a group's outputs into its own scratch, with the elementwise engine's
// vector code (so the values are the op's, bit for bit), and hands them to
// consume(row, col, values, n) while they are still in cache.
#pragma once

#include "elementwise.h"

#include <c10/util/FunctionRef.h>

#include <vector>

namespace fused_acts::cpu {

template <typename scalar_t>
using GroupConsumer = c10::function_ref<void(int64_t row, int64_t col, const scalar_t* values, int64_t n)>;

template <typename scalar_t, int NIn, typename Fn>
void for_each_group(const ElementwiseArgs<NIn, 1>& args, int64_t group, const Fn& fn,
                    GroupConsumer<scalar_t> consume) {
  static_assert(Fn::kOut == 1, "a grouped functor has one output");
  const int64_t groups_per_row = (args.cols + group - 1) / group;
  const int64_t grain = std::max<int64_t>(1, kGrainSize / group);
  with_pairs<Fn>(args, [&](auto in_pair, auto) {
    at::parallel_for(0, args.rows * groups_per_row, grain, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> scratch(group);
      scalar_t* const out[1] = {scratch.data()};
      for (int64_t g = begin; g < end; ++g) {
        const int64_t row = g / groups_per_row, col = g % groups_per_row * group;
        const int64_t n = std::min(group, args.cols - col);
        const scalar_t* in[NIn];
        for (int k = 0; k < NIn; ++k) {
          in[k] = static_cast<const scalar_t*>(args.in[k]) + row * args.in_row_stride[k] + col * args.in_col_stride(k);
        }
        run_segment<scalar_t, decltype(in_pair)::value, -1>(fn, in, out, n, /*bypass_cache=*/false);
        consume(row, col, scratch.data(), n);
      }
    });
  });
}

}  // namespace fused_acts::cpu
