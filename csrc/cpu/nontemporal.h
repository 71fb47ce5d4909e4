// Non-temporal (cache-bypassing) stores for calls whose operands outgrow the
// last-level cache. There an output is evicted before anything reads it, and
// a plain store first reads every line it writes (write-allocate): a unary
// forward then moves three bytes per two it needs, and the lines it pulls in
// evict the inputs of whatever runs next.
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#endif

namespace fused_acts::cpu {

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
constexpr bool kHasNontemporalStores = true;
#else
constexpr bool kHasNontemporalStores = false;
#endif

// One number and the letter after it ("32768K") from a sysfs file. C stdio,
// not <fstream>: istream's number parsing segfaulted in an extension built
// by GCC 13 against torch 2.11 (an H100 host), on every first CPU call.
inline bool read_sysfs_number(const std::string& path, long long& value, char& unit) {
  std::FILE* file = std::fopen(path.c_str(), "r");
  if (file == nullptr) return false;
  unit = 0;
  const bool ok = std::fscanf(file, "%lld%c", &value, &unit) >= 1;
  std::fclose(file);
  return ok;
}

// Size of the largest cache that cpu0 sees, from Linux sysfs; 0 where
// unknown. glibc's sysconf reports a whole socket's L3 on some virtual
// machines, the sum of every core complex's.
inline int64_t last_level_cache_bytes() {
  int64_t best_level = 0, best_bytes = 0;
  for (int index = 0;; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
    long long level = 0, size = 0;
    char level_end = 0, unit = 0;
    if (!read_sysfs_number(dir + "level", level, level_end) || !read_sysfs_number(dir + "size", size, unit)) break;
    const int shift = unit == 'K' ? 10 : unit == 'M' ? 20 : unit == 'G' ? 30 : 0;
    if (level > best_level) {
      best_level = level;
      best_bytes = static_cast<int64_t>(size) << shift;
    }
  }
  return best_bytes;
}

// Calls that read and write at least this many bytes store non-temporally:
// FUSED_ACTS_NONTEMPORAL_MIN_BYTES if set (0: always, -1: never), else the
// last-level cache's size, else never.
inline int64_t nontemporal_min_bytes() {
  static const int64_t min_bytes = [] {
    constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
    int64_t bytes = kNever;
    if (const char* env = std::getenv("FUSED_ACTS_NONTEMPORAL_MIN_BYTES")) {
      char* end = nullptr;
      const long long value = std::strtoll(env, &end, 10);
      TORCH_CHECK(end != env && *end == '\0' && value >= -1,
                  "FUSED_ACTS_NONTEMPORAL_MIN_BYTES must be a byte count, 0 (always) or -1 (never), got '", env, "'");
      if (value >= 0) bytes = value;
    } else if (const int64_t cache = last_level_cache_bytes(); cache > 0) {
      bytes = cache;
    }
    return kHasNontemporalStores ? bytes : kNever;
  }();
  return min_bytes;
}

// One whole vector to an address aligned to its size.
template <typename scalar_t>
inline void store_nontemporal(const at::vec::Vectorized<scalar_t>& v, scalar_t* ptr) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<scalar_t, float>) {
    _mm512_stream_ps(ptr, v);
  } else if constexpr (std::is_same_v<scalar_t, double>) {
    _mm512_stream_pd(ptr, v);
  } else {
    _mm512_stream_si512(reinterpret_cast<__m512i*>(ptr), v);
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<scalar_t, float>) {
    _mm256_stream_ps(ptr, v);
  } else if constexpr (std::is_same_v<scalar_t, double>) {
    _mm256_stream_pd(ptr, v);
  } else {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(ptr), v);
  }
#else
  v.store(ptr);
#endif
}

// Non-temporal stores are weakly ordered: fence them before the thread
// reports its part done, so that whoever reads the output sees them.
inline void nontemporal_fence() {
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
  _mm_sfence();
#endif
}

// n elements from `from` to `to`, whole aligned vectors bypassing the
// cache (the rest cached); nontemporal_fence() after the last.
template <typename scalar_t>
inline void copy_nontemporal(const scalar_t* from, scalar_t* to, int64_t n) {
  using Vec = at::vec::Vectorized<scalar_t>;
  int64_t i = 0;
  if (reinterpret_cast<uintptr_t>(to) % sizeof(Vec) == 0) {
    for (; i + Vec::size() <= n; i += Vec::size()) store_nontemporal(Vec::loadu(from + i), to + i);
  }
  std::copy(from + i, from + n, to + i);
}

}  // namespace fused_acts::cpu
