// Small non-cryptographic hashes that fix dsv3's reproducible streams: the same values on every
// platform and standard library (std's distributions are not portable), so seeds mean the same
// everywhere.
#pragma once

#include <cstdint>
#include <string_view>

namespace dsv3 {

// SplitMix64's output function at x (Steele, Lea, Flood 2014): a bijective 64-bit mix. A stream is
// splitmix64(s), splitmix64(s + γ), … with γ = 0x9e3779b97f4a7c15.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The SplitMix64 stream from `seed`.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    const uint64_t out = splitmix64(state_);
    state_ += 0x9e3779b97f4a7c15ull;
    return out;
  }
  uint64_t below(uint64_t n) { return next() % n; }  // [0, n); the modulo bias is below n / 2^64

 private:
  uint64_t state_;
};

// FNV-1a, 64-bit.
inline uint64_t fnv1a64(std::string_view bytes, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace dsv3
