#!/usr/bin/env bash
# Fetch Triton's perf_analyzer for benchmarks/serve_loadtest.py --perf-analyzer (not a project dependency).
# tritonclient 2.41.0 is the last wheel on PyPI that ships the binary; it links libcudart.so.12 (PyPI's
# nvidia-cuda-runtime-cu12; no GPU is needed for HTTP load) and libb64 (Debian's libb64-0d, installed with apt).
#   bash benchmarks/get_perf_analyzer.sh /tmp/pa && python benchmarks/serve_loadtest.py --perf-analyzer /tmp/pa/perf_analyzer
set -euo pipefail
DEST=${1:?usage: get_perf_analyzer.sh DEST_DIR}
PY=${PYTHON:-python3}
mkdir -p "$DEST"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PY" -m pip download -q --no-deps -d "$TMP" "tritonclient==2.41.0" "nvidia-cuda-runtime-cu12==12.9.79"
"$PY" - "$TMP" "$DEST" <<'PYEOF'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1:]
wanted = {"tritonclient-2.41.0.data/data/bin/perf_analyzer": "perf_analyzer",
          "nvidia/cuda_runtime/lib/libcudart.so.12": "libcudart.so.12"}
for wheel in glob.glob(os.path.join(tmp, "*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name in wanted:
                path = os.path.join(dest, wanted[name])
                with open(path, "wb") as f:
                    f.write(z.read(name))
                os.chmod(path, 0o755)
PYEOF
if ! ldconfig -p | grep -q libb64.so.0d; then apt-get install -y -q libb64-0d >/dev/null; fi
LD_LIBRARY_PATH="$DEST" "$DEST/perf_analyzer" --version
