// Sidecar reading and validation: the rules of rtresnet/sidecar.py (Sidecar.from_json and check_consistent).
#include "rtresnet/sidecar.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <type_traits>

namespace rtresnet {
namespace {

using nlohmann::json;

const char* const kBackends[] = {"tensorrt", "onnxruntime", "openvino"};  // the Python side's engine backends
const char* const kPrecisions[] = {"fp32", "fp16", "int8"};
const char* const kInputFormats[] = {"float-nchw", "uint8-nhwc-rgb", "uint8-nhwc-bgr"};

template <size_t N>
bool one_of(const std::string& s, const char* const (&values)[N]) {
  return std::any_of(std::begin(values), std::end(values), [&](const char* v) { return s == v; });
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + (shape[i] < 0 ? std::string("batch") : std::to_string(shape[i]));
  return s + "]";
}

// json accessors that name the missing or malformed field, like the Python KeyError/TypeError message
const json& field(const json& d, const char* key) {
  if (!d.is_object() || !d.contains(key)) throw Error(std::string("'") + key + "'");
  return d.at(key);
}
// Integers must be JSON integers (nlohmann would turn 1000.5 or true into an int; Python refuses them).
bool strict_ints(const json& v) {
  if (v.is_array()) return std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_number_integer(); });
  return v.is_number_integer();
}
template <typename T>
T get(const json& d, const char* key) {
  const json& v = field(d, key);
  constexpr bool ints = std::is_same_v<T, int> || std::is_same_v<T, std::array<int, 2>>;
  if constexpr (std::is_same_v<T, std::array<int, 2>>) {
    if (!v.is_array() || v.size() != 2) throw Error(std::string("'") + key + "' must hold two integers");
  }
  if (ints && !strict_ints(v)) throw Error(std::string("'") + key + "' must be an integer");
  try {
    return v.get<T>();
  } catch (const json::exception&) {
    throw Error(std::string("'") + key + "' has the wrong type");
  }
}
template <typename T>
T get_or(const json& d, const char* key, T fallback) {
  if (!d.contains(key) || d.at(key).is_null()) return fallback;
  return get<T>(d, key);
}
std::optional<std::string> get_opt(const json& d, const char* key) {
  if (!d.contains(key) || d.at(key).is_null()) return std::nullopt;
  return get<std::string>(d, key);
}

TensorSpec tensor(const json& t) {
  TensorSpec spec{get<std::string>(t, "name"), {}, get<std::string>(t, "dtype")};
  for (const json& dim : field(t, "shape")) spec.shape.push_back(dim.is_number_integer() ? dim.get<int64_t>() : -1);
  return spec;
}

ModelInfo model_info(const json& m) {
  ModelInfo info;
  info.arch = get<std::string>(m, "arch");
  info.num_classes = get<int>(m, "num_classes");
  info.in_channels = get<int>(m, "in_channels");
  info.input_size = get<std::array<int, 2>>(m, "input_size");
  const json& p = field(m, "preprocessing");
  info.preprocessing.resize = get<int>(p, "resize");
  info.preprocessing.crop = get<std::array<int, 2>>(p, "crop");
  info.preprocessing.mean = get<std::vector<double>>(p, "mean");
  info.preprocessing.std = get<std::vector<double>>(p, "std");
  info.preprocessing.interpolation = get_or<std::string>(p, "interpolation", "bilinear");
  info.preprocessing.channel_order = get_or<std::string>(p, "channel_order", "RGB");
  info.preprocessing.layout = get_or<std::string>(p, "layout", "NCHW");
  info.preprocessing.value_range = get_or<double>(p, "value_range", 255.0);
  info.input_format = get_or<std::string>(m, "input_format", "float-nchw");
  info.precision = get_or<std::string>(m, "precision", "fp32");
  info.labels = get_or<std::vector<std::string>>(m, "labels", {});
  return info;
}

// What check_consistent() in rtresnet/sidecar.py refuses, in the same words.
void check_consistent(const Sidecar& s, const std::string& source) {
  auto fail = [&](const std::string& what) { throw Error(source + " " + what + ": rebuild the engine with `rtresnet build`"); };
  const ModelInfo& m = s.model;
  const Preprocessing& p = m.preprocessing;
  if (!one_of(s.precision, kPrecisions)) fail("names an unknown precision '" + s.precision + "'");
  if (!one_of(m.input_format, kInputFormats)) fail("names an unknown input format '" + m.input_format + "'");
  if (m.num_classes < 1 || m.in_channels < 1 || m.input_size[0] < 1 || m.input_size[1] < 1)
    fail("has a model with non-positive sizes");
  if (p.mean.size() != p.std.size()) fail("has " + std::to_string(p.mean.size()) + " mean values but " + std::to_string(p.std.size()) + " std values");
  if (std::any_of(p.std.begin(), p.std.end(), [](double v) { return !(v > 0); })) fail("has a non-positive std");
  if (static_cast<int>(p.mean.size()) != m.in_channels) fail("has " + std::to_string(p.mean.size()) + " mean/std values for " + std::to_string(m.in_channels) + " input channels");
  if (p.crop != m.input_size) fail("crops " + std::to_string(p.crop[0]) + "x" + std::to_string(p.crop[1]) + " but the input size is " + std::to_string(m.input_size[0]) + "x" + std::to_string(m.input_size[1]));
  if (p.resize < std::min(p.crop[0], p.crop[1])) fail("resizes to " + std::to_string(p.resize) + ", smaller than the crop");
  if (!m.labels.empty() && static_cast<int>(m.labels.size()) != m.num_classes)
    fail("has " + std::to_string(m.labels.size()) + " labels for " + std::to_string(m.num_classes) + " classes");
  if (s.inputs.size() != 1 || s.outputs.size() != 1)
    fail("lists " + std::to_string(s.inputs.size()) + " inputs and " + std::to_string(s.outputs.size()) + " outputs; rtresnet runs classifiers with one of each");
  const TensorSpec& in = s.inputs[0];
  const TensorSpec& out = s.outputs[0];
  std::vector<int64_t> want = m.takes_frames() ? std::vector<int64_t>{-1, m.input_size[0], m.input_size[1], 3}
                                               : std::vector<int64_t>{-1, m.in_channels, m.input_size[0], m.input_size[1]};
  if (in.shape.size() != 4 || !std::equal(want.begin() + 1, want.end(), in.shape.begin() + 1))
    fail("input " + in.name + " has shape " + shape_str(in.shape) + " but the model takes " + shape_str(want));
  bool frame_dtype = in.dtype == "uint8";
  if (m.takes_frames() != frame_dtype || (!frame_dtype && in.dtype != "float32" && in.dtype != "float16"))
    fail("input " + in.name + " is " + in.dtype + ", which does not fit input format " + m.input_format);
  if (out.shape.size() != 2 || out.shape[1] != m.num_classes)
    fail("output " + out.name + " has shape " + shape_str(out.shape) + " but the model has " + std::to_string(m.num_classes) + " classes");
  if (out.dtype != "float32" && out.dtype != "float16") fail("output " + out.name + " is " + out.dtype + ", not float logits");
  const BatchProfile& b = s.profile;
  if (!(1 <= b.min_batch && b.min_batch <= b.opt_batch && b.opt_batch <= b.max_batch))
    fail("has batch profile " + std::to_string(b.min_batch) + "/" + std::to_string(b.opt_batch) + "/" + std::to_string(b.max_batch) + " (min/opt/max must satisfy 1 <= min <= opt <= max)");
  if (in.shape[0] >= 0 && (b.min_batch != in.shape[0] || b.max_batch != in.shape[0]))
    fail("has batch profile " + std::to_string(b.min_batch) + ".." + std::to_string(b.max_batch) + " for a fixed batch of " + std::to_string(in.shape[0]));
}

}  // namespace

std::string ModelInfo::label(int index) const {
  return index >= 0 && index < static_cast<int>(labels.size()) ? labels[index] : std::to_string(index);
}

std::string Sidecar::rebuild_hint() const {
  return build_command.empty() ? std::string("rebuild it with `rtresnet build --force`")
                               : "rebuild it with `" + build_command + "`";
}

std::string sidecar_path(const std::string& engine_path) { return engine_path + ".json"; }

Sidecar parse_sidecar(const std::string& text, const std::string& source) {
  json d;
  try {
    d = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(source + " is not valid JSON: " + e.what());
  }
  if (!d.is_object() || !d.contains("schema") || d["schema"] != kSidecarSchema)
    throw Error(source + " is not an rtresnet engine sidecar");
  if (!d.contains("schema_version") || d["schema_version"] != kSidecarSchemaVersion)
    throw Error(source + " has schema version " + (d.contains("schema_version") ? d["schema_version"].dump() : "None") +
                "; this rtresnet reads version " + std::to_string(kSidecarSchemaVersion) + ": rebuild the engine");
  Sidecar s;
  s.path = source;
  try {
    // the fields Python's Sidecar dataclass requires (no default there)
    for (const char* key : {"backend", "precision", "model", "inputs", "outputs", "profile", "onnx_sha256",
                            "engine_sha256", "build_seconds", "built_at", "flags"})
      field(d, key);
    s.backend = get<std::string>(d, "backend");
    s.precision = get<std::string>(d, "precision");
    s.model = model_info(d["model"]);
    for (const json& t : get<json>(d, "inputs")) s.inputs.push_back(tensor(t));
    for (const json& t : get<json>(d, "outputs")) s.outputs.push_back(tensor(t));
    const json& profile = d["profile"];
    s.profile = {get<int>(profile, "min_batch"), get<int>(profile, "opt_batch"), get<int>(profile, "max_batch")};
    s.onnx_sha256 = get<std::string>(d, "onnx_sha256");
    s.engine_sha256 = get<std::string>(d, "engine_sha256");
    s.built_at = get<std::string>(d, "built_at");
    get<double>(d, "build_seconds");
    s.tensorrt_version = get_opt(d, "tensorrt_version");
    s.onnxruntime_version = get_opt(d, "onnxruntime_version");
    s.execution_providers = get_or<std::vector<std::string>>(d, "execution_providers", {});
    if (d.contains("gpu") && d["gpu"].is_object()) {
      s.gpu_compute_capability = get_opt(d["gpu"], "compute_capability");
      s.gpu_name = get_opt(d["gpu"], "name");
    }
    const json& flags = get<json>(d, "flags");
    s.hardware_compat = get_or<std::string>(flags, "hardware_compat", "none");
    s.version_compat = get_or<bool>(flags, "version_compat", false);
    if (d.contains("extra") && d["extra"].is_object()) s.build_command = get_or<std::string>(d["extra"], "build_command", "");
  } catch (const Error& e) {
    throw Error(source + " is missing or has a malformed field: " + e.what());
  } catch (const json::exception& e) {
    throw Error(source + " is missing or has a malformed field: " + e.what());
  }
  if (!one_of(s.backend, kBackends)) throw Error(source + " names an unknown backend '" + s.backend + "'");
  check_consistent(s, source);
  return s;
}

Sidecar read_sidecar(const std::string& engine_path, bool verify_hash) {
  std::ifstream engine(engine_path, std::ios::binary);
  if (!engine) throw Error("engine not found: " + engine_path);
  const std::string path = sidecar_path(engine_path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("no sidecar " + path.substr(path.find_last_of('/') + 1) + " beside " + engine_path + "; rebuild it with `rtresnet build`");
  std::stringstream text;
  text << in.rdbuf();
  Sidecar s = parse_sidecar(text.str(), path);
  if (verify_hash && sha256_file(engine_path) != s.engine_sha256)
    throw Error(engine_path + " does not match its sidecar (sha256 differs): the file was changed or replaced; " + s.rebuild_hint());
  return s;
}

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw Error("OpenSSL cannot hash with sha256");
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) out += {hex[digest[i] >> 4], hex[digest[i] & 15]};
  return out;
}

}  // namespace rtresnet
