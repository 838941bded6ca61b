// A minimal .npy reader for the sample: little-endian float32/float64/float16/uint8 arrays in C order.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "rtresnet/sidecar.hpp"

namespace npy {

struct Array {
  std::string dtype;  // "float32", "float64", "float16", "uint8"
  std::vector<int64_t> shape;
  std::vector<char> data;
  size_t count() const {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
  }
};

inline Array load(const std::string& path) {
  using rtresnet::Error;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw Error(path + " is not a .npy file");
  uint32_t header_len = 0;
  unsigned char len[4] = {0, 0, 0, 0};
  in.read(reinterpret_cast<char*>(len), magic[6] == 1 ? 2 : 4);
  header_len = len[0] | (len[1] << 8) | (len[2] << 16) | (static_cast<uint32_t>(len[3]) << 24);
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) throw Error(path + " has a truncated .npy header");
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([^']*)'"))) throw Error(path + ": .npy header without descr");
  const std::string descr = m[1];
  Array a;
  if (descr == "<f4") a.dtype = "float32";
  else if (descr == "<f8") a.dtype = "float64";
  else if (descr == "<f2") a.dtype = "float16";
  else if (descr == "|u1" || descr == "<u1") a.dtype = "uint8";
  else throw Error(path + " holds " + descr + " values; give float32, float64, float16 or uint8");
  if (std::regex_search(header, m, std::regex("'fortran_order':\\s*True")))
    throw Error(path + " is in Fortran order; save it with np.ascontiguousarray");
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)"))) throw Error(path + ": .npy header without shape");
  const std::string dims = m[1];
  const std::regex number("\\d+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number); it != std::sregex_iterator(); ++it)
    a.shape.push_back(std::stoll(it->str()));
  const size_t item = a.dtype == "float64" ? 8 : a.dtype == "float32" ? 4 : a.dtype == "float16" ? 2 : 1;
  a.data.resize(a.count() * item);
  if (!in.read(a.data.data(), static_cast<std::streamsize>(a.data.size())))
    throw Error(path + " is truncated: its header promises " + std::to_string(a.data.size()) + " bytes of data");
  return a;
}

}  // namespace npy
