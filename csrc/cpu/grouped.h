// The CPU engine's second shape of work: a functor's output reduced group by
// group before it is stored. Each row is cut into groups of `group`
// consecutive elements (a row's last one may be shorter). A thread computes
// a span of whole groups of a row into its own scratch, with the elementwise
// engine's vector code (so the values are the op's, bit for bit, rounded to
// scalar_t), converts them to float32, and hands the span to
// consume(row, col, values, n) while it is still in L1.
#pragma once

#include "elementwise.h"

#include <c10/util/FunctionRef.h>

#include <vector>

namespace fused_acts::cpu {

using SpanConsumer = c10::function_ref<void(int64_t row, int64_t col, const float* values, int64_t n)>;

// Small groups are computed this many elements at a time, rounded down to
// whole groups: one pass of the vector loop per span, not per group.
constexpr int64_t kSpan = 2048;

template <typename scalar_t, int NIn, typename Fn>
void for_each_span(const ElementwiseArgs<NIn, 1>& args, int64_t group, const Fn& fn, SpanConsumer consume) {
  static_assert(Fn::kOut == 1, "a grouped functor has one output");
  const int64_t groups_per_row = (args.cols + group - 1) / group;
  const int64_t groups_per_span = std::max<int64_t>(1, kSpan / group);
  const int64_t spans_per_row = (groups_per_row + groups_per_span - 1) / groups_per_span;
  const int64_t span = groups_per_span * group;
  const int64_t grain = std::max<int64_t>(1, kGrainSize / span);
  with_pairs<Fn>(args, [&](auto in_pair, auto) {
    at::parallel_for(0, args.rows * spans_per_row, grain, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> scratch(span);
      std::vector<float> values(std::is_same_v<scalar_t, float> ? 0 : span);
      scalar_t* const out[1] = {scratch.data()};
      for (int64_t task = begin; task < end; ++task) {
        const int64_t row = task / spans_per_row, first_col = task % spans_per_row * span;
        const int64_t n = std::min(span, args.cols - first_col);
        const scalar_t* in[NIn];
        for (int k = 0; k < NIn; ++k) {
          in[k] = static_cast<const scalar_t*>(args.in[k]) + row * args.in_row_stride[k] +
                  first_col * args.in_col_stride(k);
        }
        run_segment<scalar_t, decltype(in_pair)::value, -1>(fn, in, out, n, /*bypass_cache=*/false);
        if constexpr (std::is_same_v<scalar_t, float>) {
          consume(row, first_col, scratch.data(), n);
        } else {
          at::vec::convert(scratch.data(), values.data(), n);
          consume(row, first_col, values.data(), n);
        }
      }
    });
  });
}

}  // namespace fused_acts::cpu
