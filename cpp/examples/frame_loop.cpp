// Embedding rtresnet in a perception loop: camera frames in (uint8 HxWx3, read in place), labels out.
// Build the engine with `rtresnet export --preprocess uint8-nhwc-bgr` then `rtresnet build`.
// Usage: rtresnet-frame-loop ENGINE [FRAMES]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "rtresnet/engine.hpp"

int main(int argc, char** argv) {
  if (argc < 2) return std::fprintf(stderr, "usage: %s ENGINE [FRAMES]\n", argv[0]), 2;
  try {
    rtresnet::Options options;
    options.spin = false;  // a perception process runs other models between frames: don't burn their cores
    auto engine = rtresnet::load(argv[1], options);  // checks the sidecar and the engine's hash once, at start-up
    const auto& spec = engine->input_spec();          // (H, W, 3) uint8 frames
    if (spec.dtype != "uint8") throw rtresnet::Error("export the model with --preprocess uint8-nhwc-rgb|bgr");
    std::vector<uint8_t> frame(spec.sample_elements());  // stands in for the camera driver's buffer
    const int frames = argc > 2 ? std::atoi(argv[2]) : 30;
    for (int i = 0; i < frames; ++i) {
      for (size_t p = 0; p < frame.size(); ++p) frame[p] = static_cast<uint8_t>((p + 7 * i) % 251);  // "capture"
      const auto t0 = std::chrono::steady_clock::now();
      const auto top = engine->predict(frame.data(), 1, 1)[0][0];
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::printf("frame %d: %s (%.3f) in %.2f ms\n", i, top.label.c_str(), top.probability, ms);
    }
  } catch (const std::exception& e) {  // rtresnet::Error, and bad_alloc & co.
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
