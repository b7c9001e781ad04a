#!/usr/bin/env bash
# One call on a lent GPU machine (issue 12): the engine's CUDA path, which no GPU has run yet.
#
#   device: run(command="bash scripts/gpu_engine.sh", timeout_s=600)
#
# 1. the tests marked `gpu` (tests/engine/test_cuda.py: greedy tokens against model.generate on the
#    GPU, CUDA graphs against the eager step, no recompilation after the warm-up);
# 2. the serving benchmark in-process (the image has no FastAPI/uvicorn: the EngineClient, not
#    HTTP) with the decode step eager and compiled as CUDA graphs, one after the other.
# Everything lands in $OUT (logs and two BENCHMARKS-style reports). The image holds torch,
# transformers, tokenizers, safetensors, numpy, httpx and pytest (/work/.library/device/KINDS.md):
# the engine needs nothing else, so nothing is carried. A dry run on the CPU (the gpu tests skip):
#   OUT=/tmp/gpu-engine DEVICE=cpu QUICK=--quick bash scripts/gpu_engine.sh
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?run this on the device machine (OUT is its result folder)}"
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-}
export PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/gpu_engine.log"; }
nvidia-smi -L 2>&1 | tee -a "$OUT/gpu_engine.log"
$PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)" 2>&1 | tee -a "$OUT/gpu_engine.log"

log "tests marked gpu"
timeout 240 $PY -m pytest -q -p no:cacheprovider -m gpu tests/engine/test_cuda.py -rs 2>&1 | tail -40 | tee -a "$OUT/gpu_engine.log"

for c in off on; do
  log "bench on $DEVICE, --compile $c"
  timeout "$([ "$c" = on ] && echo 210 || echo 120)" $PY scripts/bench.py --device "$DEVICE" --no-http --model models/codecomplete-tiny-py \
    --compile "$c" --keystroke-tokens 400 --ratio-rounds 3 $QUICK --out "$OUT/bench-$DEVICE-compile-$c.md" \
    > "$OUT/bench-$DEVICE-compile-$c.log" 2>&1
  log "exit $?; $(grep -E 'concurrent clients|single client|ratio round|failed|Error' "$OUT/bench-$DEVICE-compile-$c.log" | head -12)"
done
log "done"
