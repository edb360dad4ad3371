// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
//
// Why counter-based: every random draw of the pipeline must be a pure function of
// (seed, epoch, sample, stream), independent of thread count, batch size and scheduling.
// A Philox block is a bijection of a 128-bit counter under a 64-bit key, so a stream is
// just "key + which sample/stream + how many draws so far" and needs no shared state.
#pragma once

#include <cmath>
#include <cstdint>

namespace cvrl {

namespace detail {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline void philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * ctr[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * ctr[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t c1 = ctr[1], c3 = ctr[3];
    ctr[0] = hi1 ^ c1 ^ k0;
    ctr[1] = lo1;
    ctr[2] = hi0 ^ c3 ^ k1;
    ctr[3] = lo0;
    k0 += kW0;
    k1 += kW1;
  }
}

}  // namespace detail

// Stream ids used by the pipeline. Each sample owns several independent streams so that,
// e.g., the crop box (whose number of draws depends on the frame size) does not shift the
// colour parameters.
enum StreamId : uint32_t {
  kStreamTemporal = 1,
  kStreamCropView1 = 2,
  kStreamParamsView1 = 3,
  kStreamCropView2 = 4,
  kStreamParamsView2 = 5,
  kStreamEpochShuffle = 6,
  kStreamReplacement = 7,
};

// One independent random stream keyed by (seed, epoch, sample, stream). Draw i of the stream
// is a pure function of the key and i.
class CounterRng {
 public:
  CounterRng(uint64_t seed, uint64_t epoch, uint64_t sample, uint32_t stream) {
    // Fold the 64-bit fields into the 64-bit Philox key and the upper counter words.
    const uint64_t key = detail::splitmix64(seed ^ detail::splitmix64(epoch * 0x632BE59BD9B4E019ull + stream));
    k0_ = static_cast<uint32_t>(key);
    k1_ = static_cast<uint32_t>(key >> 32);
    const uint64_t s = detail::splitmix64(sample + 0x1000193ull * stream);
    c2_ = static_cast<uint32_t>(s);
    c3_ = static_cast<uint32_t>(s >> 32) ^ static_cast<uint32_t>(sample >> 32);
  }

  uint32_t next_u32() {
    if (used_ == 4) refill();
    return block_[used_++];
  }
  uint64_t next_u64() {
    const uint64_t hi = next_u32();
    return (hi << 32) | next_u32();
  }
  // Uniform double in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n), n > 0 (half-open). Multiply-shift on 64 bits: bias < n / 2^64.
  uint64_t uniform_int(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next_u64()) * n) >> 64);
  }
  bool coin(double p) { return uniform() < p; }
  uint64_t draws() const { return counter_ * 4 - (4 - used_); }

 private:
  void refill() {
    block_[0] = static_cast<uint32_t>(counter_);
    block_[1] = static_cast<uint32_t>(counter_ >> 32);
    block_[2] = c2_;
    block_[3] = c3_;
    detail::philox4x32_10(block_, k0_, k1_);
    ++counter_;
    used_ = 0;
  }
  uint32_t k0_, k1_, c2_, c3_;
  uint64_t counter_ = 0;
  uint32_t block_[4] = {0, 0, 0, 0};
  int used_ = 4;
};

}  // namespace cvrl
