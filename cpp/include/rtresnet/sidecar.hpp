// The engine sidecar (<engine>.json) as rtresnet/sidecar.py writes it, read and validated with the same rules:
// a C++ process refuses exactly the sidecars the Python runtime refuses.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace rtresnet {

// Every failure of this library: one line saying what is wrong and what to do.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr const char* kSidecarSchema = "rtresnet.engine-sidecar";
inline constexpr int kSidecarSchemaVersion = 1;

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;  // -1 for a dynamic (named) axis
  std::string dtype;           // numpy names: "float32", "float16", "uint8"
};

struct Preprocessing {
  int resize = 0;
  std::array<int, 2> crop{};  // height, width
  std::vector<double> mean, std;
  std::string interpolation = "bilinear";
  std::string channel_order = "RGB";
  std::string layout = "NCHW";
  double value_range = 255.0;
};

struct ModelInfo {
  std::string arch;
  int num_classes = 0;
  int in_channels = 0;
  std::array<int, 2> input_size{};  // height, width
  Preprocessing preprocessing;
  std::string input_format = "float-nchw";  // or "uint8-nhwc-rgb" / "uint8-nhwc-bgr": raw camera frames
  std::string precision = "fp32";
  std::vector<std::string> labels;  // empty, or one per class

  bool takes_frames() const { return input_format != "float-nchw"; }
  std::string label(int index) const;
};

struct BatchProfile {
  int min_batch = 1, opt_batch = 1, max_batch = 1;
};

struct Sidecar {
  std::string path;  // where it was read from, for messages
  std::string backend;    // "onnxruntime" | "tensorrt"
  std::string precision;  // "fp32" | "fp16" | "int8"
  ModelInfo model;
  std::vector<TensorSpec> inputs, outputs;
  BatchProfile profile;
  std::string onnx_sha256, engine_sha256, built_at;
  std::optional<std::string> tensorrt_version, onnxruntime_version, gpu_compute_capability, gpu_name;
  std::vector<std::string> execution_providers;
  std::string hardware_compat = "none";  // flags.hardware_compat of TensorRT plans
  bool version_compat = false;           // flags.version_compat
  std::string build_command;             // extra.build_command, for "rebuild it with ..." hints

  std::string rebuild_hint() const;
};

// "<engine>.json" beside the engine.
std::string sidecar_path(const std::string& engine_path);

// Parse and validate sidecar text (source names it in messages). Throws Error.
Sidecar parse_sidecar(const std::string& text, const std::string& source);

// Read the sidecar of engine_path and, with verify_hash, refuse an engine whose sha256 differs from the recorded one.
Sidecar read_sidecar(const std::string& engine_path, bool verify_hash = true);

// Lower-case hex sha256 of a file's bytes (OpenSSL EVP).
std::string sha256_file(const std::string& path);

}  // namespace rtresnet
