// The CPU engine: runs any functor from elementwise_functors.h over
// ElementwiseArgs, SIMD-vectorized and split across threads by
// at::parallel_for. Half types load as float vectors, compute in float and
// round once on store.
#pragma once

#include "../elementwise_args.h"
#include "nontemporal.h"
#include "vec_math.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace fused_acts::cpu {

using at::vec::Vectorized;

// Elements per task, as ATen's TensorIterator uses: below this, threads cost more than they save.
constexpr int64_t kGrainSize = 32768;

// Two float vectors into one 16-bit vector, rounding to nearest even.
// AVX512-BF16 does it for bfloat16 in one instruction where ATen's integer
// sequence takes sixteen, about a quarter of a bfloat16 SiLU.
template <typename scalar_t>
inline Vectorized<scalar_t> narrow_from_float(const Vectorized<float>& lo, const Vectorized<float>& hi) {
#if defined(__AVX512BF16__)
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    if ((subnormal_lanes(lo) | subnormal_lanes(hi)) == 0) {
      return Vectorized<scalar_t>(reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
    }
  }
#endif
  return at::vec::convert_from_float<scalar_t>(lo, hi);
}

// Applies fn lane-wise to storage-dtype vectors, in opmath.
template <typename scalar_t, int NIn, int NOut, typename Fn>
inline void apply_in_opmath(const Fn& fn, const Vectorized<scalar_t> (&in)[NIn], Vectorized<scalar_t> (&out)[NOut]) {
  if constexpr (std::is_same_v<at::opmath_type<scalar_t>, scalar_t>) {
    fn(in, out);
  } else {
    // A vector of 16-bit values widens into two float vectors.
    Vectorized<float> lo[NIn], hi[NIn], out_lo[NOut], out_hi[NOut];
    for (int k = 0; k < NIn; ++k) {
      std::tie(lo[k], hi[k]) = at::vec::convert_to_float<scalar_t>(in[k]);
    }
    fn(lo, out_lo);
    fn(hi, out_hi);
    for (int k = 0; k < NOut; ++k) out[k] = narrow_from_float<scalar_t>(out_lo[k], out_hi[k]);
  }
}

// The even and odd elements of the 2·Vec::size() in lo and hi. For 16-bit
// types at::vec has no shuffle (its generic one goes element by element), so
// they go through float, exactly, and back.
template <typename scalar_t>
inline std::pair<Vectorized<scalar_t>, Vectorized<scalar_t>> deinterleave(const Vectorized<scalar_t>& lo,
                                                                          const Vectorized<scalar_t>& hi) {
  if constexpr (std::is_same_v<at::opmath_type<scalar_t>, scalar_t>) {
    return at::vec::deinterleave2(lo, hi);
  } else {
    const auto [lo0, lo1] = at::vec::convert_to_float<scalar_t>(lo);
    const auto [hi0, hi1] = at::vec::convert_to_float<scalar_t>(hi);
    const auto [even_lo, odd_lo] = at::vec::deinterleave2(lo0, lo1);
    const auto [even_hi, odd_hi] = at::vec::deinterleave2(hi0, hi1);
    return {narrow_from_float<scalar_t>(even_lo, even_hi), narrow_from_float<scalar_t>(odd_lo, odd_hi)};
  }
}

// deinterleave's inverse.
template <typename scalar_t>
inline std::pair<Vectorized<scalar_t>, Vectorized<scalar_t>> interleave(const Vectorized<scalar_t>& even,
                                                                        const Vectorized<scalar_t>& odd) {
  if constexpr (std::is_same_v<at::opmath_type<scalar_t>, scalar_t>) {
    return at::vec::interleave2(even, odd);
  } else {
    const auto [even_lo, even_hi] = at::vec::convert_to_float<scalar_t>(even);
    const auto [odd_lo, odd_hi] = at::vec::convert_to_float<scalar_t>(odd);
    const auto [lo0, lo1] = at::vec::interleave2(even_lo, odd_lo);
    const auto [hi0, hi1] = at::vec::interleave2(even_hi, odd_hi);
    return {narrow_from_float<scalar_t>(lo0, lo1), narrow_from_float<scalar_t>(hi0, hi1)};
  }
}

// count elements of a pair, from 2·count interleaved ones at ptr.
template <typename scalar_t>
inline void load_pair(const scalar_t* ptr, int64_t count, Vectorized<scalar_t>& even, Vectorized<scalar_t>& odd) {
  using Vec = Vectorized<scalar_t>;
  const int64_t n = 2 * count;
  const Vec lo = Vec::loadu(ptr, std::min<int64_t>(n, Vec::size()));
  const Vec hi = n > Vec::size() ? Vec::loadu(ptr + Vec::size(), n - Vec::size()) : Vec(scalar_t(0));
  std::tie(even, odd) = deinterleave(lo, hi);
}

template <typename scalar_t, typename Store>
inline void store_pair(const Vectorized<scalar_t>& even, const Vectorized<scalar_t>& odd, scalar_t* ptr, int64_t count,
                       const Store& store) {
  using Vec = Vectorized<scalar_t>;
  const int64_t n = 2 * count;
  const auto [lo, hi] = interleave(even, odd);
  store(lo, ptr, std::min<int64_t>(n, Vec::size()));
  if (n > Vec::size()) store(hi, ptr + Vec::size(), n - Vec::size());
}

// n elements from each operand's pointer: unit-stride, but for the pairs
// InPair and OutPair (elementwise_args.h; -1: none), whose first operand's
// pointer is the pair's. The tail goes through the same vector code (partial
// loads), so every element gets the same rounding wherever it sits.
// flatten: GCC otherwise leaves the activation out of line past a few exps,
// and each call spills every vector register.
template <typename scalar_t, int InPair, int OutPair, int NIn, int NOut, typename Fn>
__attribute__((flatten)) inline void run_segment(const Fn& fn, const scalar_t* const (&in)[NIn],
                                                 scalar_t* const (&out)[NOut], int64_t n, bool bypass_cache) {
  using Vec = Vectorized<scalar_t>;
  auto step = [&](int64_t i, int64_t count, auto store) {
    Vec in_vec[NIn], out_vec[NOut];
    for (int k = 0; k < NIn; ++k) {
      if (k == InPair) {
        load_pair(in[k] + 2 * i, count, in_vec[k], in_vec[k + 1]);
        ++k;
      } else {
        in_vec[k] = Vec::loadu(in[k] + i, count);
      }
    }
    apply_in_opmath<scalar_t>(fn, in_vec, out_vec);
    for (int k = 0; k < NOut; ++k) {
      if (k == OutPair) {
        store_pair(out_vec[k], out_vec[k + 1], out[k] + 2 * i, count, store);
        ++k;
      } else {
        store(out_vec[k], out[k] + i, count);
      }
    }
  };
  auto cached = [](const Vec& v, scalar_t* ptr, int64_t count) { v.store(ptr, count); };
  // Four independent opmath vectors per iteration overlap their long exp
  // chains; a 16-bit vector already widens into two.
  constexpr int kSteps = sizeof(scalar_t) == 2 ? 2 : 4;
  auto whole_steps = [&](auto store) {
    int64_t i = 0;
    for (; i + kSteps * Vec::size() <= n; i += kSteps * Vec::size()) {
      for (int k = 0; k < kSteps; ++k) step(i + k * Vec::size(), Vec::size(), store);
    }
    return i;
  };
  int64_t i;
  if constexpr (kHasNontemporalStores) {
    // Non-temporal stores need aligned vectors. Outputs come aligned from the
    // allocator; a segment that starts mid-vector (rows of odd length, a
    // thread's range of an odd-sized tensor) keeps cached stores.
    bool stream = bypass_cache;
    for (int k = 0; k < NOut && stream; ++k) {
      // A pair's second pointer is never stored through.
      stream = (OutPair >= 0 && k == OutPair + 1) || reinterpret_cast<uintptr_t>(out[k]) % sizeof(Vec) == 0;
    }
    auto bypassing = [](const Vec& v, scalar_t* ptr, int64_t) { store_nontemporal(v, ptr); };
    i = stream ? whole_steps(bypassing) : whole_steps(cached);
  } else {
    i = whole_steps(cached);
  }
  for (; i < n; i += Vec::size()) step(i, std::min<int64_t>(Vec::size(), n - i), cached);
}

template <typename scalar_t, int InPair, int OutPair, int NIn, int NOut, typename Fn>
void run_rows(const ElementwiseArgs<NIn, NOut>& args, const Fn& fn) {
  const int64_t cols = args.cols;
  const int64_t bytes = (NIn + NOut) * args.rows * cols * static_cast<int64_t>(sizeof(scalar_t));
  const bool bypass_cache = bytes >= nontemporal_min_bytes();
  at::parallel_for(0, args.rows * cols, kGrainSize, [&](int64_t begin, int64_t end) {
    // A thread's range may start and end mid-row; walk it one row piece at a time.
    for (int64_t i = begin; i < end;) {
      const int64_t row = i / cols, col = i % cols;
      const int64_t n = std::min(cols - col, end - i);
      const scalar_t* in[NIn];
      scalar_t* out[NOut];
      for (int k = 0; k < NIn; ++k) {
        in[k] = static_cast<const scalar_t*>(args.in[k]) + row * args.in_row_stride[k] + col * args.in_col_stride(k);
      }
      for (int k = 0; k < NOut; ++k) {
        out[k] = static_cast<scalar_t*>(args.out[k]) + row * args.out_row_stride[k] + col * args.out_col_stride(k);
      }
      run_segment<scalar_t, InPair, OutPair>(fn, in, out, n, bypass_cache);
      i += n;
    }
    if (bypass_cache) nontemporal_fence();
  });
}

// body(InPair, OutPair), as integral constants, for the pairs args have:
// pairs are compiled only for the functors that have them.
template <typename Fn, int NIn, int NOut, typename Body>
void with_pairs(const ElementwiseArgs<NIn, NOut>& args, const Body& body) {
  constexpr Pairs kPairs = Fn::kInterleaved;
  if constexpr (kPairs.in >= 0 || kPairs.out >= 0) {
    if (Fn::kPairedOnly || args.pairs.in >= 0 || args.pairs.out >= 0) {
      TORCH_INTERNAL_ASSERT(args.pairs.in == kPairs.in && args.pairs.out == kPairs.out);
      return body(std::integral_constant<int, kPairs.in>{}, std::integral_constant<int, kPairs.out>{});
    }
  }
  if constexpr (!Fn::kPairedOnly) body(std::integral_constant<int, -1>{}, std::integral_constant<int, -1>{});
}

template <typename scalar_t, int NIn, int NOut, typename Fn>
void elementwise(const ElementwiseArgs<NIn, NOut>& args, const Fn& fn) {
  with_pairs<Fn>(args, [&](auto in_pair, auto out_pair) {
    run_rows<scalar_t, decltype(in_pair)::value, decltype(out_pair)::value>(args, fn);
  });
}

}  // namespace fused_acts::cpu
