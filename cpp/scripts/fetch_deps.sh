#!/usr/bin/env bash
# Header-only build dependencies of the C++ library, from the registries, into one folder (default build/cpp-deps).
# Nothing on the system is changed: apt runs with its own sources list, state and cache folders.
#   include/onnxruntime/  ONNX Runtime C/C++ API headers (Debian libonnxruntime-dev, API version 21; the library
#                         itself is loaded at run time, from the onnxruntime wheel in .venv or any ORT >= 1.21)
#   include/nlohmann/     nlohmann-json (Debian nlohmann-json3-dev), for the sidecar reader
#   tensorrt/include/     TensorRT 10.x headers (Apache-2.0, vendored by the kernel-lens sdist on PyPI), only to
#                         compile-check the TensorRT backend where TensorRT itself is not installed
#   cuda/include/         CUDA runtime headers (PyPI nvidia-cuda-runtime + nvidia-cuda-crt, NVIDIA EULA: fetched at
#                         build time, never committed), used when no CUDA toolkit is installed
# Re-running is cheap: each part is skipped once its stamp exists. RTRESNET_SKIP_TRT_HEADERS=1 skips the last two.
set -euo pipefail
DEST=$(mkdir -p "${1:-build/cpp-deps}" && cd "${1:-build/cpp-deps}" && pwd)
PYTHON=${PYTHON:-python3}
DEBIAN_SUITE=${DEBIAN_SUITE:-trixie}   # the first Debian release with libonnxruntime-dev
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
KERNEL_LENS=${KERNEL_LENS:-kernel-lens==2.0.1}   # vendors TensorRT 10.14.1's include/
CUDA_HEADERS=${CUDA_HEADERS:-13.5.37}              # nvidia-cuda-runtime / nvidia-cuda-crt version
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT

if [ ! -f "$DEST/.debs-ok" ]; then
  echo "cpp deps: ONNX Runtime and nlohmann-json headers from Debian $DEBIAN_SUITE (private apt state)"
  mkdir -p "$work/apt/lists/partial" "$work/cache/archives/partial" "$work/parts" "$work/x"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $DEBIAN_MIRROR $DEBIAN_SUITE main" \
    > "$work/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/parts"
            -o "Dir::State=$work/apt" -o "Dir::State::status=/dev/null" -o "Dir::Cache=$work/cache"
            -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)" -o "APT::Architecture=$(dpkg --print-architecture)")
  apt-get "${apt_opts[@]}" -qq update
  (cd "$work" && apt-get "${apt_opts[@]}" -qq download libonnxruntime-dev nlohmann-json3-dev)
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/x"; done
  rm -rf "$DEST/include" && mkdir -p "$DEST/include"
  cp -r "$work/x/usr/include/onnxruntime" "$work/x/usr/include/nlohmann" "$DEST/include/"
  mkdir -p "$DEST/licenses" && cp "$work/x/usr/share/doc/libonnxruntime-dev/copyright" "$DEST/licenses/onnxruntime" \
    && cp "$work/x/usr/share/doc/nlohmann-json3-dev/copyright" "$DEST/licenses/nlohmann-json"
  touch "$DEST/.debs-ok"
fi

if [ "${RTRESNET_SKIP_TRT_HEADERS:-0}" != 1 ] && [ ! -f "$DEST/.trt-headers-ok" ]; then
  echo "cpp deps: TensorRT headers ($KERNEL_LENS sdist) and CUDA runtime headers (PyPI wheels)"
  "$PYTHON" -m pip download -q --no-deps --no-binary :all: "$KERNEL_LENS" -d "$work/sdist"
  tar xzf "$work"/sdist/*.tar.gz -C "$work"
  inc=$(dirname "$(find "$work" -name NvInferRuntime.h | head -1)")
  rm -rf "$DEST/tensorrt" && mkdir -p "$DEST/tensorrt" && cp -r "$inc" "$DEST/tensorrt/include"
  cp "$(find "$work" -maxdepth 2 -name LICENSE | head -1)" "$DEST/tensorrt/LICENSE"
  "$PYTHON" -m pip download -q --no-deps --only-binary :all: --python-version 3.11 \
    --platform "manylinux2014_$(uname -m)" "nvidia-cuda-runtime==$CUDA_HEADERS" "nvidia-cuda-crt==$CUDA_HEADERS" -d "$work/wheels"
  for whl in "$work"/wheels/*.whl; do "$PYTHON" -m zipfile -e "$whl" "$work/cuda"; done
  rm -rf "$DEST/cuda" && mkdir -p "$DEST/cuda"
  cp -r "$(dirname "$(find "$work/cuda" -name cuda_runtime_api.h | head -1)")" "$DEST/cuda/include"
  touch "$DEST/.trt-headers-ok"
fi
echo "cpp deps: $DEST"
