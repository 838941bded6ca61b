#!/usr/bin/env bash
# The main job on the CPU (`make demo`). Grows with the pipeline.
set -euo pipefail
rtresnet doctor
rtresnet models
