// rtresnet-classify ENGINE --input x.npy [--topk K] [--json]: run a batch from a .npy file through an engine.
// Exit codes: 0 done, 1 an error (one line on stderr), 2 a usage error.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "npy.hpp"
#include "rtresnet/engine.hpp"

namespace {

const char* kUsage =
    "usage: rtresnet-classify ENGINE --input X.npy [--topk K] [--json] [--threads N] [--no-spin]\n"
    "                         [--no-verify-hash] [--cuda-graph] [--device N] [--ort-library PATH]\n"
    "                         [--benchmark ITERS [--warmup ITERS]]\n"
    "Runs the (N, ...) batch in X.npy (float32 NCHW, or uint8 NHWC frames for --preprocess engines) and prints the\n"
    "top-K classes per sample; --json prints them with the logits as JSON; --benchmark times ITERS calls.\n";

struct Args {
  std::string engine, input;
  int topk = 5, benchmark = 0, warmup = 10;
  bool json = false;
  rtresnet::Options options;
};

[[noreturn]] void usage_error(const std::string& what) {
  std::fprintf(stderr, "rtresnet-classify: %s\n%s", what.c_str(), kUsage);
  std::exit(2);
}

int to_int(const std::string& flag, const std::string& value) {
  try {
    size_t used = 0;
    const int v = std::stoi(value, &used);
    if (used == value.size()) return v;
  } catch (const std::exception&) {
  }
  usage_error(flag + " takes an integer, got '" + value + "'");
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") { std::fputs(kUsage, stdout); std::exit(0); }
    else if (arg == "--input") a.input = value();
    else if (arg == "--topk") a.topk = to_int(arg, value());
    else if (arg == "--json") a.json = true;
    else if (arg == "--threads") a.options.threads = to_int(arg, value());
    else if (arg == "--no-spin") a.options.spin = false;
    else if (arg == "--no-verify-hash") a.options.verify_hash = false;
    else if (arg == "--cuda-graph") a.options.cuda_graph = true;
    else if (arg == "--device") a.options.device = to_int(arg, value());
    else if (arg == "--ort-library") a.options.ort_library = value();
    else if (arg == "--benchmark") a.benchmark = to_int(arg, value());
    else if (arg == "--warmup") a.warmup = to_int(arg, value());
    else if (!arg.empty() && arg[0] == '-') usage_error("unknown option " + arg);
    else if (a.engine.empty()) a.engine = arg;
    else usage_error("unexpected argument " + arg);
  }
  if (a.engine.empty()) usage_error("no ENGINE given");
  if (a.input.empty()) usage_error("no --input X.npy given");
  if (a.topk < 1) usage_error("--topk must be at least 1");
  if (a.benchmark < 0 || a.warmup < 0) usage_error("--benchmark and --warmup must be >= 0");
  return a;
}

// The batch in the engine's input kind: float32 (float16/float64 files converted) or uint8 frames.
struct Batch {
  std::vector<float> floats;
  std::vector<uint8_t> frames;
  int n = 0;
};

Batch read_batch(const std::string& path, const rtresnet::InputSpec& spec) {
  npy::Array a = npy::load(path);
  std::vector<int64_t> want = spec.sample_shape;
  if (a.shape.size() != want.size() + 1 || !std::equal(want.begin(), want.end(), a.shape.begin() + 1)) {
    std::string got;
    for (int64_t d : a.shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
    throw rtresnet::Error(path + " has shape (" + got + ") but the engine takes " + spec.describe());
  }
  Batch b;
  b.n = static_cast<int>(a.shape[0]);
  const size_t count = a.count();
  if (spec.dtype == "uint8") {
    if (a.dtype != "uint8") throw rtresnet::Error(path + " holds " + a.dtype + " but this engine takes uint8 frames");
    b.frames.assign(a.data.begin(), a.data.end());
    return b;
  }
  if (a.dtype == "uint8") throw rtresnet::Error(path + " holds uint8 but this engine takes float input (" + spec.describe() + ")");
  b.floats.resize(count);
  for (size_t i = 0; i < count; ++i) {
    if (a.dtype == "float32") std::memcpy(&b.floats[i], a.data.data() + 4 * i, 4);
    else if (a.dtype == "float64") { double d; std::memcpy(&d, a.data.data() + 8 * i, 8); b.floats[i] = static_cast<float>(d); }
    else { uint16_t h; std::memcpy(&h, a.data.data() + 2 * i, 2); b.floats[i] = rtresnet::half_to_float(h); }
  }
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  try {
    auto engine = rtresnet::load(args.engine, args.options);
    const Batch batch = read_batch(args.input, engine->input_spec());
    const bool frames = engine->input_spec().dtype == "uint8";
    auto infer = [&] { return frames ? engine->infer(batch.frames.data(), batch.n) : engine->infer(batch.floats.data(), batch.n); };
    const rtresnet::Logits logits = infer();
    const auto top = engine->predict(logits, args.topk);
    nlohmann::json out = {{"engine", args.engine}, {"backend", engine->describe()}, {"input", engine->input_spec().describe()}};
    if (args.benchmark > 0) {
      for (int i = 0; i < args.warmup; ++i) infer();
      std::vector<double> ms;
      for (int i = 0; i < args.benchmark; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        infer();
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      out["latency_ms"]["samples"] = ms;  // in call order
      std::sort(ms.begin(), ms.end());
      auto pct = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<size_t>(q / 100.0 * (ms.size() - 1) + 0.5))]; };
      out["latency_ms"].update({{"batch", batch.n}, {"iters", args.benchmark}, {"p50", pct(50)}, {"p90", pct(90)}, {"p99", pct(99)},
                           {"min", ms.front()}, {"max", ms.back()}});
    }
    if (args.json) {
      out["logits"] = nlohmann::json::array();
      for (int b = 0; b < logits.batch; ++b) out["logits"].push_back(std::vector<float>(logits.row(b), logits.row(b) + logits.num_classes));
      out["predictions"] = nlohmann::json::array();
      for (const auto& row : top) {
        nlohmann::json r = nlohmann::json::array();
        for (const auto& p : row) r.push_back({{"label", p.label}, {"index", p.index}, {"probability", p.probability}});
        out["predictions"].push_back(r);
      }
      std::cout << out.dump() << "\n";
      return 0;
    }
    std::cout << args.engine << ": " << engine->describe() << "\n";
    for (size_t b = 0; b < top.size(); ++b) {
      std::cout << "sample " << b << ":";
      for (const auto& p : top[b]) std::cout << " " << p.label << " " << std::fixed << std::setprecision(4) << p.probability;
      std::cout << "\n";
    }
    if (args.benchmark > 0) {
      nlohmann::json summary = out["latency_ms"];
      summary.erase("samples");
      std::cout << "latency_ms " << summary.dump() << "\n";
    }
  } catch (const std::exception& e) {  // rtresnet::Error, and std::bad_alloc & co. in the same one-line form
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
