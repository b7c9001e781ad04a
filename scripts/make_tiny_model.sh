#!/usr/bin/env bash
# Rebuild models/codecomplete-tiny-py end to end with the project's own tools (issue 6):
# curate this machine's Python code -> train a tokenizer -> token shards -> DeepSpeed training on the
# CPU -> export -> evaluation -> model card.
#
#   make tiny-model                       # everything under data/tiny-py, the model into models/
#   WORK=/tmp/tiny STEPS=200 make tiny-model
#
# Each stage resumes: curate picks up finished tasks, train continues from its newest complete
# checkpoint (--resume auto), so the same command after an interruption carries on.
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-.venv/bin/codecomplete}
WORK=${WORK:-data/tiny-py}
OUT=${OUT:-models/codecomplete-tiny-py}
VOCAB=${VOCAB:-8192}
STEPS=${STEPS:-800}
EVAL_N=${EVAL_N:-200}

$CC curate --config configs/data/local-python.yaml --out "$WORK/corpus" --workers 2 --no-progress
[ -f "$WORK/tokenizer/tokenizer.json" ] || \
  $CC tokenizer train --input "$WORK/corpus" --out "$WORK/tokenizer" --vocab-size "$VOCAB"
$CC curate --config configs/data/local-python.yaml --out "$WORK/corpus" --workers 2 --no-progress \
  --tokenizer "$WORK/tokenizer"
$CC train --config configs/train/tiny-cpu.yaml --num-gpus 2 --resume auto \
  --set data.path="$WORK/corpus/tokens" --set model.tokenizer="$WORK/tokenizer" \
  --set run.out_dir="$WORK/run" --set run.max_steps="$STEPS"
$CC export "$WORK/run" "$OUT" --overwrite

mkdir -p "$WORK/eval"
$CC eval --model "$OUT" --task perplexity --data "$WORK/corpus/tokens" --split test --out "$WORK/eval/perplexity.json"
$CC eval --model "$OUT" --task line-completion --data "$WORK/corpus" --n "$EVAL_N" --out "$WORK/eval/line-completion.json"
$CC eval --model "$OUT" --task fim --data "$WORK/corpus" --n "$EVAL_N" --out "$WORK/eval/fim.json"
$CC eval --model "$OUT" --task humaneval --samples 1 --out "$WORK/eval/humaneval.json"
.venv/bin/python scripts/model_card.py --model "$OUT" --eval "$WORK"/eval/*.json --corpus "$WORK/corpus"
