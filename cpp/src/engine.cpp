// The parts of Engine every backend shares: batch and type checks, float16 conversion, softmax top-k, dispatch.
#include "rtresnet/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "backends.hpp"

namespace rtresnet {

size_t InputSpec::sample_elements() const {
  return std::accumulate(sample_shape.begin(), sample_shape.end(), size_t{1},
                         [](size_t a, int64_t d) { return a * static_cast<size_t>(d); });
}

std::string InputSpec::describe() const {
  std::string s = name + "[" + std::to_string(min_batch) + ".." + std::to_string(max_batch);
  for (int64_t d : sample_shape) s += ", " + std::to_string(d);
  return s + "] " + dtype + " " + layout;
}

Engine::Engine(Sidecar sidecar, InputSpec spec, int num_classes, bool serialize)
    : sidecar_(std::move(sidecar)), spec_(std::move(spec)), num_classes_(num_classes), serialize_(serialize) {}

void Engine::check_batch(int n) const {
  if (n < spec_.min_batch || n > spec_.max_batch)
    throw Error("batch " + std::to_string(n) + " is outside the engine's profile " + std::to_string(spec_.min_batch) +
                ".." + std::to_string(spec_.max_batch) + "; split the batch or rebuild with --min-batch/--max-batch");
}

Logits Engine::call(const void* data, int n) {
  Logits out{n, num_classes_, std::vector<float>(static_cast<size_t>(n) * num_classes_)};
  if (serialize_) {
    std::lock_guard<std::mutex> lock(mutex_);
    run(data, n, out.values.data());
  } else {
    run(data, n, out.values.data());
  }
  return out;
}

Logits Engine::infer(const float* batch, int n) {
  if (spec_.dtype == "uint8")
    throw Error("this engine takes raw uint8 frames (" + spec_.describe() + "); pass uint8_t data");
  if (batch == nullptr) throw Error("infer: the batch pointer is null");
  check_batch(n);
  if (spec_.dtype == "float16") {
    std::vector<uint16_t> half(static_cast<size_t>(n) * spec_.sample_elements());
    std::transform(batch, batch + half.size(), half.begin(), float_to_half);
    return call(half.data(), n);
  }
  return call(batch, n);
}

Logits Engine::infer(const uint8_t* frames, int n) {
  if (spec_.dtype != "uint8")
    throw Error("this engine takes " + spec_.describe() + "; uint8 frames need an engine exported with "
                "--preprocess uint8-nhwc-rgb or uint8-nhwc-bgr");
  if (frames == nullptr) throw Error("infer: the frame pointer is null");
  check_batch(n);
  return call(frames, n);
}

std::vector<std::vector<Prediction>> Engine::predict(const Logits& logits, int topk) const {
  if (topk < 1) throw Error("topk must be at least 1, got " + std::to_string(topk));
  if (logits.batch < 0 || logits.num_classes < 1 ||
      logits.values.size() != static_cast<size_t>(logits.batch) * static_cast<size_t>(logits.num_classes))
    throw Error("predict: logits hold " + std::to_string(logits.values.size()) + " values, not batch " +
                std::to_string(logits.batch) + " x " + std::to_string(logits.num_classes) + " classes");
  const int k = std::min(topk, logits.num_classes);
  std::vector<std::vector<Prediction>> result(logits.batch);
  std::vector<double> probs(logits.num_classes);
  std::vector<int> order(logits.num_classes);
  for (int b = 0; b < logits.batch; ++b) {
    const float* z = logits.row(b);
    const double top = *std::max_element(z, z + logits.num_classes);
    double sum = 0;
    for (int c = 0; c < logits.num_classes; ++c) sum += probs[c] = std::exp(static_cast<double>(z[c]) - top);
    std::iota(order.begin(), order.end(), 0);
    // NaN (from NaN logits) sorts last: a strict weak order even then
    std::stable_sort(order.begin(), order.end(), [&](int a, int c) {
      return std::isnan(probs[c]) ? !std::isnan(probs[a]) : probs[a] > probs[c];
    });
    for (int i = 0; i < k; ++i)
      result[b].push_back({model().label(order[i]), order[i], static_cast<float>(probs[order[i]] / sum)});
  }
  return result;
}

std::vector<std::string> backends() {
#ifdef RTRESNET_WITH_TENSORRT
  return {"onnxruntime", "tensorrt"};
#else
  return {"onnxruntime"};
#endif
}

std::unique_ptr<Engine> load(const std::string& engine_path, const Options& options) {
  Sidecar sidecar = read_sidecar(engine_path, options.verify_hash);
  const std::string backend = options.backend.empty() ? sidecar.backend : options.backend;
  if (backend != sidecar.backend)
    throw Error(engine_path + " is an " + sidecar.backend + " engine, not a " + backend + " one; load it with the " +
                sidecar.backend + " backend");
  if (backend == "onnxruntime") return detail::load_onnxruntime(engine_path, std::move(sidecar), options);
  if (backend == "openvino")  // a compiled blob for OpenVINO's own runtime, which this library does not embed
    throw Error(engine_path + " is an OpenVINO blob; rtresnet's C++ library runs onnxruntime and TensorRT engines: "
                "build one from the same ONNX with `rtresnet build MODEL.onnx --backend onnxruntime`");
#ifdef RTRESNET_WITH_TENSORRT
  if (backend == "tensorrt") return detail::load_tensorrt(engine_path, std::move(sidecar), options);
#endif
  throw Error(engine_path + " is a " + backend + " engine but this build of rtresnet's C++ library has no " + backend +
              " backend (built with: onnxruntime); rebuild it with TensorRT found (-DTENSORRT_ROOT=...)");
}

namespace detail {

InputSpec input_spec_of(const Sidecar& s) {
  const TensorSpec& in = s.inputs.at(0);
  return {in.name, std::vector<int64_t>(in.shape.begin() + 1, in.shape.end()), in.dtype,
          s.model.takes_frames() ? "NHWC" : "NCHW", s.profile.min_batch, s.profile.max_batch};
}

void check_io(const Sidecar& s, const std::string& path, const TensorSpec& input, const TensorSpec& output) {
  auto same = [](const TensorSpec& a, const TensorSpec& b) {
    if (a.name != b.name || a.dtype != b.dtype || a.shape.size() != b.shape.size()) return false;
    for (size_t i = 1; i < a.shape.size(); ++i)
      if (a.shape[i] != b.shape[i] && a.shape[i] >= 0 && b.shape[i] >= 0) return false;
    return true;
  };
  auto str = [](const TensorSpec& t) {
    std::string d;
    for (int64_t v : t.shape) d += (d.empty() ? "" : ",") + (v < 0 ? std::string("?") : std::to_string(v));
    return t.name + "[" + d + "] " + t.dtype;
  };
  if (!same(input, s.inputs[0]))
    throw Error(path + " takes " + str(input) + " but its sidecar says " + str(s.inputs[0]) +
                ": the sidecar belongs to another engine; " + s.rebuild_hint());
  if (!same(output, s.outputs[0]))
    throw Error(path + " returns " + str(output) + " but its sidecar says " + str(s.outputs[0]) +
                ": the sidecar belongs to another engine; " + s.rebuild_hint());
}

}  // namespace detail

// IEEE 754 binary16, round to nearest even (the conversion numpy's astype(float16) makes).
uint16_t float_to_half(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u : 0));  // inf, nan
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds above 65504: inf
  if (x < 0x38800000u) {  // subnormal half (or zero)
    if (x < 0x33000000u) return static_cast<uint16_t>(sign);
    const uint32_t mant = (x & 0x7fffffu) | 0x800000u;
    const uint32_t drop = 126 - (x >> 23);  // value = mant * 2^(exp - 150) = half * 2^-24
    uint32_t half = mant >> drop;
    const uint32_t rest = mant & ((1u << drop) - 1), halfway = 1u << (drop - 1);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = ((x - 0x38000000u) >> 13);
  const uint32_t rest = x & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, x;
  if (exp == 0x1f) {
    x = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    x = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    x = sign;
  } else {  // subnormal: normalize
    int e = -1;
    do { ++e; mant <<= 1; } while (!(mant & 0x400u));
    x = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

}  // namespace rtresnet
