#!/usr/bin/env bash
# The GPU checks of the `cuda` feature, for a machine with an NVIDIA GPU but no Rust toolchain.
#
#   scripts/gpu_check.sh build   # here: release binary + the device test binaries into gpu-bin/
#   scripts/gpu_check.sh run     # there (repository root): device tests, then the GPU report
#
# gpu-bin/ is ignored by git; carry it with the working tree. `run` looks for CUDA 13's cuBLAS
# and NVRTC in /usr/local/cuda*/ and in Python's nvidia-* wheels (PyTorch brings them) and adds
# their folders to LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-run}" in
build)
  mkdir -p gpu-bin
  cargo build --release --features cuda
  cp target/release/hyperprox gpu-bin/
  exe=$(cargo test -p hyperprox-core --features cuda --test cuda_device --no-run \
        --message-format=json 2>/dev/null \
        | python3 -c 'import json, sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')
  cp "$exe" gpu-bin/cuda_device
  exe=$(cargo test -p hyperprox-unfolded --features cuda --test gpu_train --no-run \
        --message-format=json 2>/dev/null \
        | python3 -c 'import json, sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')
  cp "$exe" gpu-bin/gpu_train
  ls -la gpu-bin
  ;;
run)
  libs=$( { ls -d /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib 2>/dev/null;
            python3 - <<'PY' 2>/dev/null || true
import glob, os, site
for d in site.getsitepackages():
    for lib in glob.glob(os.path.join(d, "nvidia", "**", "lib*.so.13*"), recursive=True):
        print(os.path.dirname(lib))
PY
          } | sort -u | tr '\n' ':')
  export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:-}"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  gpu-bin/cuda_device --nocapture --test-threads 1
  gpu-bin/gpu_train --nocapture --test-threads 1
  gpu-bin/hyperprox bench --device cuda | tee gpu-bench.jsonl
  ;;
*)
  echo "usage: $0 build|run" >&2
  exit 2
  ;;
esac
