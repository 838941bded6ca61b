// The TensorRT backend (TensorRT 10.x API: named I/O tensors, enqueueV3). Built when TensorRT and CUDA are found;
// elsewhere compile-checked against TensorRT's published headers (the trt_syntax_check target).
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <regex>

#include "backends.hpp"

namespace rtresnet::detail {
namespace {

void cuda_ok(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw Error(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(status));
}

class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "[TensorRT] %s\n", msg);
  }
};

Logger& logger() {
  static Logger* instance = new Logger;  // never destroyed: engines held in globals outlive static destructors
  return *instance;
}

// Makes `device` current for a scope and gives the caller's thread its own device back afterwards.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    cudaGetDevice(&previous_);
    cuda_ok(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

std::vector<int> version_parts(const std::string& version, size_t count) {
  std::vector<int> parts;
  const std::regex number("\\d+");
  for (auto it = std::sregex_iterator(version.begin(), version.end(), number); it != std::sregex_iterator() && parts.size() < count; ++it)
    parts.push_back(it->str().size() > 6 ? -1 : std::stoi(it->str()));  // absurd numbers never match
  return parts;
}

// The load guard of rtresnet/runtime/guard.py: refuse a plan this TensorRT or GPU cannot run, before TensorRT's own
// "plan file is not compatible" error, and say which command rebuilds it. The runtime reports major.minor.patch
// (getInferLibVersion), so plans of two builds of one patch release compare equal here; Python compares all four.
void check_plan(const Sidecar& s, const std::string& path, int device) {
  const int v = getInferLibVersion();  // major * 10000 + minor * 100 + patch
  const std::vector<int> runtime{v / 10000, (v / 100) % 100, v % 100};
  const std::string runtime_str = std::to_string(runtime[0]) + "." + std::to_string(runtime[1]) + "." + std::to_string(runtime[2]);
  const std::vector<int> built = version_parts(s.tensorrt_version.value_or(""), 3);
  if (built != runtime) {
    const bool newer = !built.empty() && runtime >= built;
    if (!(s.version_compat && newer))
      throw Error(path + " was built with TensorRT " + s.tensorrt_version.value_or("unknown") + " but this is TensorRT " +
                  runtime_str + (s.version_compat ? " (built version-compatible, but only newer runtimes can load it); "
                                                  : " (not built version-compatible (--version-compat)); ") + s.rebuild_hint());
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess)
    throw Error(path + " is a TensorRT engine but no CUDA GPU " + std::to_string(device) + " is visible");
  if (!s.gpu_compute_capability) throw Error("the sidecar of " + path + " names no GPU; " + s.rebuild_hint());
  const std::vector<int> want = version_parts(*s.gpu_compute_capability, 2), have{prop.major, prop.minor};
  if (want != have && !(s.hardware_compat == "ampere+" && prop.major >= 8))
    throw Error(path + " was built for compute capability " + *s.gpu_compute_capability + " (" + s.gpu_name.value_or("unknown GPU") +
                ") but this GPU is " + std::to_string(prop.major) + "." + std::to_string(prop.minor) + " (hardware compatibility: " +
                s.hardware_compat + "); " + s.rebuild_hint());
}

std::string dtype_name(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return "float32";
    case nvinfer1::DataType::kHALF: return "float16";
    case nvinfer1::DataType::kUINT8: return "uint8";
    case nvinfer1::DataType::kINT8: return "int8";
    default: return "tensorrt-type-" + std::to_string(static_cast<int>(t));
  }
}

TensorSpec spec_of(const nvinfer1::ICudaEngine& engine, const char* name) {
  const nvinfer1::Dims dims = engine.getTensorShape(name);
  TensorSpec spec{name, {}, dtype_name(engine.getTensorDataType(name))};
  for (int i = 0; i < dims.nbDims; ++i) spec.shape.push_back(dims.d[i]);
  return spec;
}

class TrtEngine final : public Engine {
 public:
  TrtEngine(Sidecar sidecar, InputSpec spec, int num_classes, const Options& options,
            std::unique_ptr<nvinfer1::IRuntime> runtime, std::unique_ptr<nvinfer1::ICudaEngine> engine,
            std::string out_name, std::string out_dtype)
      : Engine(std::move(sidecar), std::move(spec), num_classes, /*serialize=*/true),  // one context, one set of buffers
        device_(options.device), cuda_graph_(options.cuda_graph), runtime_(std::move(runtime)), engine_(std::move(engine)),
        out_name_(std::move(out_name)), out_dtype_(std::move(out_dtype)) {
    DeviceScope scope(device_);
    try {
      setup();
    } catch (...) {
      release();  // the destructor does not run for a half-built object
      throw;
    }
  }

  ~TrtEngine() override {
    DeviceScope scope(device_);
    release();
  }

  std::string describe() const override {
    const int v = getInferLibVersion();
    return "TensorRT " + std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100) +
           " (cuda:" + std::to_string(device_) + (cuda_graph_ ? ", CUDA graph)" : ")");
  }

 protected:
  void run(const void* data, int n, float* out) override {
    const InputSpec& in = input_spec();
    DeviceScope scope(device_);
    cuda_ok(cudaMemcpyAsync(d_in_, data, in_bytes_per_sample_ * n, cudaMemcpyHostToDevice, stream_), "copy to the GPU");
    if (n != bound_batch_) {
      drop_graph();  // a graph belongs to the context state it was captured in: one shape, recaptured after a change
      nvinfer1::Dims dims{};
      dims.nbDims = static_cast<int32_t>(in.sample_shape.size() + 1);
      dims.d[0] = n;
      for (size_t i = 0; i < in.sample_shape.size(); ++i) dims.d[i + 1] = in.sample_shape[i];
      if (!context_->setInputShape(in.name.c_str(), dims)) throw Error("TensorRT refused batch " + std::to_string(n));
      bound_batch_ = n;
    }
    if (graph_) {
      cuda_ok(cudaGraphLaunch(graph_, stream_), "cudaGraphLaunch");
    } else {
      if (!context_->enqueueV3(stream_)) throw Error("TensorRT failed to run " + sidecar().path);
      if (cuda_graph_ && capturable_) capture();  // after one plain run at this shape, as TensorRT requires
    }
    std::vector<uint16_t> half(out_dtype_ == "float16" ? static_cast<size_t>(n) * num_classes() : 0);
    void* host_out = half.empty() ? static_cast<void*>(out) : half.data();
    cuda_ok(cudaMemcpyAsync(host_out, d_out_, out_bytes_per_sample_ * n, cudaMemcpyDeviceToHost, stream_), "copy from the GPU");
    cuda_ok(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    for (size_t i = 0; i < half.size(); ++i) out[i] = half_to_float(half[i]);
  }

 private:
  void setup() {
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error("TensorRT could not create an execution context for " + this->sidecar().path + " (out of GPU memory?)");
    cuda_ok(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    const InputSpec& in = input_spec();
    in_bytes_per_sample_ = in.sample_elements() * dtype_size(in.dtype);
    out_bytes_per_sample_ = static_cast<size_t>(num_classes()) * dtype_size(out_dtype_);
    cuda_ok(cudaMalloc(&d_in_, in_bytes_per_sample_ * in.max_batch), "cudaMalloc");
    cuda_ok(cudaMalloc(&d_out_, out_bytes_per_sample_ * in.max_batch), "cudaMalloc");
    if (!context_->setTensorAddress(in.name.c_str(), d_in_) || !context_->setTensorAddress(out_name_.c_str(), d_out_))
      throw Error("TensorRT refused the I/O buffers of " + this->sidecar().path);
  }

  void release() noexcept {
    if (stream_) cudaStreamSynchronize(stream_);  // nothing of ours may still run when the buffers go
    drop_graph();
    if (d_in_) cudaFree(d_in_);
    if (d_out_) cudaFree(d_out_);
    d_in_ = d_out_ = nullptr;
    context_.reset();
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }

  void drop_graph() noexcept {
    if (graph_) cudaGraphExecDestroy(graph_);
    graph_ = nullptr;
  }

  // Capture the enqueue at the bound shape. A failure keeps the (good) result of the plain run and turns graphs off.
  void capture() {
    cudaGraph_t graph = nullptr;
    if (cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
      const bool queued = context_->enqueueV3(stream_);
      const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
      if (queued && ended == cudaSuccess && cudaGraphInstantiateWithFlags(&graph_, graph, 0) == cudaSuccess) {
        cudaGraphDestroy(graph);
        return;
      }
    }
    if (graph) cudaGraphDestroy(graph);
    graph_ = nullptr;
    cudaGetLastError();  // clear the capture's error state
    capturable_ = false;
    std::fprintf(stderr, "[rtresnet] %s cannot be captured in a CUDA graph; running it without\n", sidecar().path.c_str());
  }

  int device_;
  bool cuda_graph_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  std::string out_name_, out_dtype_;
  cudaStream_t stream_ = nullptr;
  void* d_in_ = nullptr;
  void* d_out_ = nullptr;
  size_t in_bytes_per_sample_ = 0, out_bytes_per_sample_ = 0;
  int bound_batch_ = -1;
  bool capturable_ = true;
  cudaGraphExec_t graph_ = nullptr;
};

}  // namespace

std::unique_ptr<Engine> load_tensorrt(const std::string& path, Sidecar sidecar, const Options& options) {
  check_plan(sidecar, path, options.device);
  DeviceScope scope(options.device);
  std::ifstream file(path, std::ios::binary);
  const std::vector<char> plan((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger()));
  if (!runtime) throw Error("TensorRT could not create a runtime (check the TensorRT and CUDA libraries)");
  // a version-compatible plan embeds its lean runtime; TensorRT runs that host code only when allowed
  if (sidecar.version_compat) runtime->setEngineHostCodeAllowed(true);
  std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(plan.data(), plan.size()));
  if (!engine) throw Error("TensorRT could not deserialize " + path + " (see its message above); " + sidecar.rebuild_hint());
  if (engine->getNbIOTensors() != 2)
    throw Error(path + " has " + std::to_string(engine->getNbIOTensors()) + " I/O tensors; rtresnet runs classifiers with one input and one output");
  const char* in_name = engine->getIOTensorName(0);
  const char* out_name = engine->getIOTensorName(1);
  if (engine->getTensorIOMode(in_name) != nvinfer1::TensorIOMode::kINPUT) std::swap(in_name, out_name);
  const TensorSpec in = spec_of(*engine, in_name), out = spec_of(*engine, out_name);
  check_io(sidecar, path, in, out);
  const int64_t lo = engine->getProfileShape(in_name, 0, nvinfer1::OptProfileSelector::kMIN).d[0];
  const int64_t hi = engine->getProfileShape(in_name, 0, nvinfer1::OptProfileSelector::kMAX).d[0];
  if (in.shape[0] < 0 && (lo != sidecar.profile.min_batch || hi != sidecar.profile.max_batch))
    throw Error(path + " has batch profile " + std::to_string(lo) + ".." + std::to_string(hi) + " but its sidecar says " +
                std::to_string(sidecar.profile.min_batch) + ".." + std::to_string(sidecar.profile.max_batch) + "; " + sidecar.rebuild_hint());
  InputSpec spec = input_spec_of(sidecar);
  const int num_classes = sidecar.model.num_classes;
  return std::make_unique<TrtEngine>(std::move(sidecar), std::move(spec), num_classes, options, std::move(runtime),
                                     std::move(engine), out.name, out.dtype);
}

}  // namespace rtresnet::detail
