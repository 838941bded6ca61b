// float <-> half conversion: every half round-trips, and floats between two halves round to the nearer one
// (ties to even), as numpy's astype(float16) does.
#include <cmath>
#include <cstdio>

#include "rtresnet/engine.hpp"

int main() {
  using rtresnet::float_to_half;
  using rtresnet::half_to_float;
  int failures = 0;
  auto expect = [&](bool ok, const char* what, unsigned h) {
    if (!ok && failures++ < 10) std::fprintf(stderr, "FAIL %s at half 0x%04x\n", what, h);
  };
  for (unsigned h = 0; h < 0x10000; ++h) {
    const float f = half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      expect(std::isnan(half_to_float(float_to_half(f))), "nan survives", h);
      continue;
    }
    expect(float_to_half(f) == h, "round trip", h);
    const unsigned next = h + 1;
    if ((h & 0x7fff) >= 0x7c00 || (next & 0x7fff) > 0x7c00 || (h & 0x8000) != (next & 0x8000)) continue;
    const float g = half_to_float(static_cast<uint16_t>(next));
    if (std::isinf(g)) continue;
    const float mid = static_cast<float>((static_cast<double>(f) + g) / 2);  // exact in float: halves have 11 bits
    expect(float_to_half(mid) == ((h & 1) ? next : h), "ties to even", h);
    expect(float_to_half(std::nextafter(mid, g)) == next, "above the midpoint", h);
    expect(float_to_half(std::nextafter(mid, f)) == h, "below the midpoint", h);
  }
  expect(float_to_half(65520.0f) == 0x7c00, "overflow to inf", 0x7c00);
  expect(float_to_half(-1e-9f) == 0x8000, "underflow to -0", 0x8000);
  std::printf("%s: %d failures\n", failures ? "FAIL" : "ok", failures);
  return failures ? 1 : 0;
}
