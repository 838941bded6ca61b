// rtresnet::Engine: run an rtresnet engine (onnxruntime model or TensorRT plan) and its sidecar in a C++ process.
//
//   auto engine = rtresnet::load("engines/r50_int8.onnx");          // reads and checks <engine>.json
//   rtresnet::Logits out = engine->infer(batch, n);                 // float NCHW, or uint8 HxWx3 frames
//   auto top = engine->predict(batch, n, 5);                        // softmax top-5 per image, labelled
//
// One Engine may be shared by threads: infer() is re-entrant on onnxruntime and serialized on TensorRT.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "rtresnet/sidecar.hpp"

namespace rtresnet {

// What infer() accepts: name[min_batch..max_batch, *sample_shape] dtype layout.
struct InputSpec {
  std::string name;
  std::vector<int64_t> sample_shape;  // (C, H, W) for NCHW, (H, W, 3) for NHWC frames
  std::string dtype;                  // the engine's own input type: "float32", "float16" or "uint8"
  std::string layout;                 // "NCHW" | "NHWC"
  int min_batch = 1, max_batch = 1;

  size_t sample_elements() const;
  std::string describe() const;
};

// Row-major [batch, num_classes] float logits.
struct Logits {
  int batch = 0, num_classes = 0;
  std::vector<float> values;
  const float* row(int i) const { return values.data() + static_cast<size_t>(i) * num_classes; }
};

struct Prediction {
  std::string label;
  int index = 0;
  float probability = 0;
};

struct Options {
  std::string backend;        // "" = the sidecar's; "onnxruntime" or "tensorrt"
  bool verify_hash = true;    // refuse an engine whose sha256 is not the sidecar's
  int threads = 0;            // onnxruntime intra-op threads (0 = onnxruntime's default)
  bool spin = true;           // onnxruntime worker spinning (turn off when several models share the cores)
  std::string ort_library;    // libonnxruntime.so to dlopen ("" = $RTRESNET_ONNXRUNTIME_LIBRARY, the build's, the
                              // loader's search path)
  int device = 0;             // CUDA device of a TensorRT engine
  bool cuda_graph = false;    // TensorRT: replay a captured CUDA graph per batch size
};

class Engine {
 public:
  virtual ~Engine() = default;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const Sidecar& sidecar() const { return sidecar_; }
  const ModelInfo& model() const { return sidecar_.model; }
  const InputSpec& input_spec() const { return spec_; }
  int num_classes() const { return num_classes_; }
  virtual std::string describe() const = 0;  // backend, version, device

  // n samples of float32 NCHW (converted to float16 when the engine takes it). Throws Error on a frame engine.
  Logits infer(const float* batch, int n);
  // n raw camera frames, uint8 HxWx3 in the sidecar's channel order, read in place (no copy on this side).
  Logits infer(const uint8_t* frames, int n);

  std::vector<std::vector<Prediction>> predict(const Logits& logits, int topk) const;
  std::vector<std::vector<Prediction>> predict(const float* batch, int n, int topk) { return predict(infer(batch, n), topk); }
  std::vector<std::vector<Prediction>> predict(const uint8_t* frames, int n, int topk) { return predict(infer(frames, n), topk); }

 protected:
  Engine(Sidecar sidecar, InputSpec spec, int num_classes, bool serialize);
  // data: n samples in the engine's input dtype; out: n * num_classes floats.
  virtual void run(const void* data, int n, float* out) = 0;

 private:
  void check_batch(int n) const;
  Logits call(const void* data, int n);

  Sidecar sidecar_;
  InputSpec spec_;
  int num_classes_;
  bool serialize_;
  std::mutex mutex_;
};

// Load an engine with its sidecar: the sidecar is validated, the engine's hash checked (Options::verify_hash) and
// the engine's own inputs and outputs compared with the sidecar's. Throws Error with a one-line message.
std::unique_ptr<Engine> load(const std::string& engine_path, const Options& options = {});

// Backends built into this library: "onnxruntime", plus "tensorrt" when built with TensorRT.
std::vector<std::string> backends();

// float <-> IEEE half, for float16 engines.
uint16_t float_to_half(float value);
float half_to_float(uint16_t value);

}  // namespace rtresnet
