// The onnxruntime backend. libonnxruntime is dlopen'ed, not linked: the binary then needs no versioned symbol
// (OrtGetApiBase@VERS_1.xx) and runs against any onnxruntime whose API version is at least the headers' one.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "backends.hpp"

namespace rtresnet::detail {
namespace {

struct OrtLibrary {
  std::string path, version;
  std::unique_ptr<Ort::Env> env;
};

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

std::vector<std::string> library_candidates(const std::string& asked) {
  if (!asked.empty()) return {asked};
  if (const char* env = std::getenv("RTRESNET_ONNXRUNTIME_LIBRARY"); env && *env) return {env};
  std::vector<std::string> c;
#ifdef RTRESNET_DEFAULT_ORT_LIBRARY
  c.emplace_back(RTRESNET_DEFAULT_ORT_LIBRARY);  // found at configure time (the .venv's onnxruntime wheel)
#endif
  c.emplace_back("libonnxruntime.so.1");  // LD_LIBRARY_PATH, rpath, the system's
  c.emplace_back("libonnxruntime.so");
  return c;
}

// One onnxruntime per process: the C++ API keeps the OrtApi pointer in a global (a host process that links
// onnxruntime itself must point Options::ort_library at that same library). Never destroyed: engines held in
// globals outlive static destructors.
OrtLibrary& ort_library(const std::string& asked) {
  static std::mutex mutex;
  static OrtLibrary& lib = *new OrtLibrary;
  std::lock_guard<std::mutex> lock(mutex);
  if (lib.env) {
    if (!asked.empty() && asked != lib.path)
      throw Error("onnxruntime is already loaded from " + lib.path + "; one process uses one onnxruntime (asked for " + asked + ")");
    return lib;
  }
  std::string tried;
  for (const std::string& path : library_candidates(asked)) {
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      tried += (tried.empty() ? "" : "; ") + first_line(dlerror());
      continue;
    }
    auto get_base = reinterpret_cast<const OrtApiBase* (*)()>(dlsym(handle, "OrtGetApiBase"));
    if (!get_base) throw Error(path + " is not an onnxruntime library (no OrtGetApiBase)");
    const OrtApiBase* base = get_base();
    const OrtApi* api = base->GetApi(ORT_API_VERSION);
    if (!api)
      throw Error("onnxruntime " + std::string(base->GetVersionString()) + " at " + path + " is older than the headers "
                  "this library was built with (API version " + std::to_string(ORT_API_VERSION) + "); use onnxruntime >= 1." +
                  std::to_string(ORT_API_VERSION));
    Ort::InitApi(api);
    lib.path = path;
    lib.version = base->GetVersionString();
    lib.env = std::make_unique<Ort::Env>(ORT_LOGGING_LEVEL_ERROR, "rtresnet");
    return lib;
  }
  throw Error("cannot load onnxruntime (" + tried + "); set RTRESNET_ONNXRUNTIME_LIBRARY to a libonnxruntime.so, "
              "e.g. the one in a Python onnxruntime wheel: .../site-packages/onnxruntime/capi/libonnxruntime.so.1.*");
}

std::string dtype_name(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    default: return "onnx-type-" + std::to_string(static_cast<int>(t));
  }
}

ONNXTensorElementDataType onnx_type(const std::string& dtype) {
  if (dtype == "float16") return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
  if (dtype == "uint8") return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

TensorSpec spec_of(const std::string& name, const Ort::TypeInfo& info) {
  auto tensor = info.GetTensorTypeAndShapeInfo();
  return {name, tensor.GetShape(), dtype_name(tensor.GetElementType())};
}

class OrtEngine final : public Engine {
 public:
  OrtEngine(Sidecar sidecar, InputSpec spec, int num_classes, OrtLibrary& lib, Ort::Session session,
            std::string out_name, std::string out_dtype)
      : Engine(std::move(sidecar), std::move(spec), num_classes, /*serialize=*/false),
        lib_(lib), session_(std::move(session)), out_name_(std::move(out_name)), out_dtype_(std::move(out_dtype)),
        memory_(Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault)) {}

  std::string describe() const override { return "onnxruntime " + lib_.version + " (CPUExecutionProvider, " + lib_.path + ")"; }

 protected:
  void run(const void* data, int n, float* out) override {
    const InputSpec& spec = input_spec();
    std::vector<int64_t> in_shape{n};
    in_shape.insert(in_shape.end(), spec.sample_shape.begin(), spec.sample_shape.end());
    const int64_t out_shape[2] = {n, num_classes()};
    const size_t in_bytes = static_cast<size_t>(n) * spec.sample_elements() * dtype_size(spec.dtype);
    const size_t out_count = static_cast<size_t>(n) * num_classes();
    std::vector<uint16_t> half_out(out_dtype_ == "float16" ? out_count : 0);
    void* out_data = half_out.empty() ? static_cast<void*>(out) : half_out.data();
    try {
      // onnxruntime reads inputs and writes outputs in place: no copies on either side
      Ort::Value input = Ort::Value::CreateTensor(memory_, const_cast<void*>(data), in_bytes, in_shape.data(),
                                                  in_shape.size(), onnx_type(spec.dtype));
      Ort::Value output = Ort::Value::CreateTensor(memory_, out_data, out_count * dtype_size(out_dtype_), out_shape, 2,
                                                   onnx_type(out_dtype_));
      const char* in_names[] = {spec.name.c_str()};
      const char* out_names[] = {out_name_.c_str()};
      session_.Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names, &output, 1);
    } catch (const Ort::Exception& e) {
      throw Error("onnxruntime failed to run " + sidecar().path + ": " + first_line(e.what()));
    }
    for (size_t i = 0; i < half_out.size(); ++i) out[i] = half_to_float(half_out[i]);
  }

 private:
  OrtLibrary& lib_;
  Ort::Session session_;
  std::string out_name_, out_dtype_;
  Ort::MemoryInfo memory_;
};

}  // namespace

std::unique_ptr<Engine> load_onnxruntime(const std::string& path, Sidecar sidecar, const Options& options) {
  if (options.threads < 0) throw Error("threads must be >= 0 (0 = onnxruntime's default), got " + std::to_string(options.threads));
  for (const std::string& ep : sidecar.execution_providers)
    if (ep != "CPUExecutionProvider")
      throw Error(path + " was optimized for " + ep + "; this library runs onnxruntime engines on the CPU: " + sidecar.rebuild_hint());
  try {
    OrtLibrary& lib = ort_library(options.ort_library);
    Ort::SessionOptions opts;
    // as rtresnet's Python OrtRunner: full optimization, one graph branch at a time (a ResNet is a chain)
    opts.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    opts.SetInterOpNumThreads(1);
    if (options.threads > 0) opts.SetIntraOpNumThreads(options.threads);
    if (!options.spin) opts.AddConfigEntry("session.intra_op.allow_spinning", "0");
    opts.SetLogSeverityLevel(3);
    Ort::Session session(*lib.env, path.c_str(), opts);
    if (session.GetInputCount() != 1 || session.GetOutputCount() != 1)
      throw Error(path + " has " + std::to_string(session.GetInputCount()) + " inputs and " +
                  std::to_string(session.GetOutputCount()) + " outputs; rtresnet runs classifiers with one of each");
    Ort::AllocatorWithDefaultOptions alloc;
    TensorSpec in = spec_of(session.GetInputNameAllocated(0, alloc).get(), session.GetInputTypeInfo(0));
    TensorSpec out = spec_of(session.GetOutputNameAllocated(0, alloc).get(), session.GetOutputTypeInfo(0));
    check_io(sidecar, path, in, out);
    InputSpec spec = input_spec_of(sidecar);
    const int num_classes = sidecar.model.num_classes;
    return std::make_unique<OrtEngine>(std::move(sidecar), std::move(spec), num_classes, lib, std::move(session),
                                       out.name, out.dtype);
  } catch (const Ort::Exception& e) {
    throw Error("onnxruntime cannot load " + path + ": " + first_line(e.what()));
  }
}

}  // namespace rtresnet::detail
