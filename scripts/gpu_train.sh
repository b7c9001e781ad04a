#!/usr/bin/env bash
# One call on a lent GPU machine (issue 16): curate that machine's own Python packages, train the
# bundled model further on the GPU for most of the budget, export, and leave the folder under $OUT.
#
#   here:   bash scripts/gpu_wheels.sh                      # once: the packages the machine lacks -> .whl/
#   device: run(command="bash scripts/gpu_train.sh", carry=[".whl"], timeout_s=600)
#   here:   bash scripts/gpu_unpack.sh /work/.device/...    # joins the parts into runs/gpu-export
#
# A dry run of everything after curation on the CPU (a few steps, small batch, no GPU needed):
#   OUT=/tmp/gpu-out CORPUS=data/tiny-py/corpus/tokens STEPS=6 MICRO=2 TRAIN_S=120 PRECISION=fp32 \
#     MASTER_PORT=29511 bash scripts/gpu_train.sh      (another port if a training run is going on)
#
# Budget (15 min of device time in all, 10 min a call): ~3 min curating, TRAIN_S (default 300 s) of
# training, ~1 min export + a 50-cut line-completion check. The recipe is tiny-cpu.yaml's continued
# from the bundled model (its tokenizer, its weights, its history), in bf16 with a large batch and
# torch's fused AdamW (no DeepSpeed op is compiled). STEPS sets the cosine schedule's length; the
# time limit stops the run early (checkpointed) if the GPU is slower than assumed.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?run this on the device machine (OUT is its result folder)}"
PY=${PY:-python3}
TRAIN_S=${TRAIN_S:-300}
STEPS=${STEPS:-3000}
MICRO=${MICRO:-64}
LR=${LR:-6e-4}
PRECISION=${PRECISION:-bf16}
WORK=${WORK:-/tmp/gpu-work}
FROM=models/codecomplete-tiny-py
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
CC=("$PY" -m codecomplete)
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/gpu_train.log"; }
nvidia-smi -L | tee -a "$OUT/gpu_train.log" || true

if [ -n "${CORPUS:-}" ]; then  # tokens curated before (a dry run on the CPU: CORPUS=data/tiny-py/corpus/tokens)
  TOKENS=$CORPUS
else
  log "curate (this machine's stdlib and site-packages, held-out packages kept out)"
  mkdir -p "$WORK"
  "${CC[@]}" curate --config configs/data/local-python.yaml --out "$WORK/corpus" --workers "$(nproc)" \
    --no-progress --tokenizer "$FROM" > "$WORK.curate.log" 2>&1 || { tail -50 "$WORK.curate.log"; exit 1; }
  TOKENS=$WORK/corpus/tokens
fi
log "tokens: $(head -c 600 "$TOKENS/meta.json")"

log "train ($TRAIN_S s at most, $STEPS steps planned, batch $MICRO x 512)"
"${CC[@]}" train --config configs/train/tiny-cpu.yaml --num-gpus 1 --master-port "${MASTER_PORT:-29500}" \
  --set model.arch=null --set model.name_or_path="$FROM" --set model.tokenizer="$FROM" \
  --set data.path="$TOKENS" --set run.out_dir="$WORK/run" --set run.max_steps="$STEPS" \
  --set run.micro_batch_size="$MICRO" --set run.precision="$PRECISION" --set optim.impl=torch --set optim.fused=true \
  --set optim.lr="$LR" --set optim.warmup_steps=100 --set run.seed=2027 --set run.time_limit_s="$TRAIN_S" \
  --set run.save_every=500 --set run.eval_every=500 --set run.log_every=50 2>&1 | tail -40 | tee -a "$OUT/gpu_train.log"

log "export"
"${CC[@]}" export "$WORK/run" "$WORK/export" --overwrite --name codecomplete-tiny-py | tee -a "$OUT/gpu_train.log"
"${CC[@]}" eval --model "$WORK/export" --task line-completion --data evalsets/heldout-python/test.jsonl.gz \
  --n 50 --keep-newline --out "$OUT/line-completion-50.json" 2>&1 | tail -15 | tee -a "$OUT/gpu_train.log" || true
cp "$WORK/run/metrics.jsonl" "$OUT/" || true
# At most 8 files of 16 MB come back: the fp32 folder as a tarball in 15 MB parts.
tar -C "$WORK" -cf - export | split -b 15m -d - "$OUT/export.tar.part"
ls -la "$OUT" | tee -a "$OUT/gpu_train.log"
