// The backends' factories (internal): each returns an Engine for an engine file whose sidecar is already read.
#pragma once

#include <memory>
#include <string>

#include "rtresnet/engine.hpp"

namespace rtresnet::detail {

std::unique_ptr<Engine> load_onnxruntime(const std::string& path, Sidecar sidecar, const Options& options);
#ifdef RTRESNET_WITH_TENSORRT
std::unique_ptr<Engine> load_tensorrt(const std::string& path, Sidecar sidecar, const Options& options);
#endif

// Compare an engine's own input/output with the sidecar's (names, dtypes, non-batch dims). Throws Error.
void check_io(const Sidecar& sidecar, const std::string& path, const TensorSpec& input, const TensorSpec& output);

// Bytes per element of the dtypes engines take and return (the sidecar admits no others).
inline size_t dtype_size(const std::string& dtype) {
  return dtype == "float16" ? 2 : (dtype == "uint8" || dtype == "int8") ? 1 : 4;
}

// The InputSpec a sidecar promises.
InputSpec input_spec_of(const Sidecar& sidecar);

}  // namespace rtresnet::detail
