#!/usr/bin/env bash
# Rebuild models/codecomplete-tiny-py end to end with the project's own tools (issue 6):
# curate this machine's Python code -> train a tokenizer -> token shards -> DeepSpeed training on the
# CPU -> export -> evaluation -> model card.
#
#   make tiny-model                          # from scratch, everything under data/tiny-py
#   WORK=/tmp/tiny STEPS=200 make tiny-model
#   FROM=models/codecomplete-tiny-py STEPS=3600 SEED=777 LR=8.0e-4 WARMUP=40 make tiny-model
#                                            # train the shipped model further (its tokenizer, its
#                                            # weights); the new card adds this run to its history
#   FROM=... SEED=<last run's seed> START=<its last sample> make tiny-model
#                                            # ... on the samples that run would have seen next
#                                            # (the card's "Training history" gives both numbers)
#   FROM=models/codecomplete-tiny-py AVERAGE=1 SEED=... START=... make tiny-model
#                                            # ... and write the mean of the run's final weights and
#                                            # FROM's (weight averaging, docs/train.md); the run's own
#                                            # weights stay in $WORK/export for the next run to start from
#   FROM=models/codecomplete-tiny-py EXTRA=configs/data/pypi-permissive.yaml SEED=6006 STEPS=2400 \
#       LR=4.0e-4 WARMUP=50 EVAL_EVERY=200 make tiny-model
#                                            # ... on more data: each curate recipe in EXTRA is curated
#                                            # into data/<its name> (EXTRA_DIR), tokenised with the same
#                                            # tokenizer and trained on together with the local corpus
#                                            # (data.path=a,b); the held-out files are checked against
#                                            # every corpus first (scripts/check_heldout_leaks.py)
#
# Each stage resumes: curate picks up finished tasks, train continues from its newest complete
# checkpoint (--resume auto), so the same command after an interruption carries on.
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-.venv/bin/codecomplete}
WORK=${WORK:-data/tiny-py}
OUT=${OUT:-models/codecomplete-tiny-py}
FROM=${FROM:-}
VOCAB=${VOCAB:-8192}
STEPS=${STEPS:-800}
SEED=${SEED:-1234}
LR=${LR:-1.0e-3}
WARMUP=${WARMUP:-60}
START=${START:-0}
EVAL_EVERY=${EVAL_EVERY:-100}
EXTRA=${EXTRA:-}          # more curate recipes (space-separated), e.g. configs/data/pypi-permissive.yaml
EXTRA_DIR=${EXTRA_DIR:-data}
EVAL_N=${EVAL_N:-200}
AVERAGE=${AVERAGE:-}      # with FROM: write the mean of the run's end and FROM's weights
if [ -n "$AVERAGE" ] && [ -z "$FROM" ]; then
  echo "make_tiny_model.sh: AVERAGE needs FROM (the weights to average the run's end with)" >&2
  exit 2
fi
# Line completion and FIM are scored on the committed held-out files (evalsets/heldout-python), so
# every version of the model is scored on the same cuts; HELDOUT=$WORK/corpus scores the new
# corpus's held-out split instead.
HELDOUT=${HELDOUT:-evalsets/heldout-python/test.jsonl.gz}

$CC curate --config configs/data/local-python.yaml --out "$WORK/corpus" --workers 2 --no-progress
if [ -n "$FROM" ]; then
  TOKENIZER=$FROM  # continuing: the model's own tokenizer, so token ids match its embeddings
  MODEL=(--set model.arch=null --set model.name_or_path="$FROM")
  RUN=$WORK/run-$SEED  # a new run folder per continuation (--resume auto must not pick up the last one)
else
  TOKENIZER=$WORK/tokenizer
  [ -f "$TOKENIZER/tokenizer.json" ] || \
    $CC tokenizer train --input "$WORK/corpus" --out "$TOKENIZER" --vocab-size "$VOCAB"
  MODEL=()
  RUN=$WORK/run
fi
$CC curate --config configs/data/local-python.yaml --out "$WORK/corpus" --workers 2 --no-progress \
  --tokenizer "$TOKENIZER"
DATA=$WORK/corpus/tokens
CORPORA=("$WORK/corpus")
for recipe in $EXTRA; do
  # A recipe's sdists/clones are cached outside its output folder (its clone_dir), so a rerun
  # resumes: finished stages are skipped, only the token stage runs for a new tokenizer.
  extra_out=$EXTRA_DIR/$(basename "$recipe" .yaml)
  $CC curate --config "$recipe" --out "$extra_out" --workers 2 --no-progress --tokenizer "$TOKENIZER"
  DATA=$DATA,$extra_out/tokens
  CORPORA+=("$extra_out")
done
# No file of the held-out evaluation set may be in any corpus's train or valid split.
.venv/bin/python scripts/check_heldout_leaks.py --eval "$HELDOUT" --corpus "${CORPORA[@]}"
$CC train --config configs/train/tiny-cpu.yaml --num-gpus 2 --resume auto "${MODEL[@]}" \
  --set data.path="$DATA" --set model.tokenizer="$TOKENIZER" \
  --set run.out_dir="$RUN" --set run.max_steps="$STEPS" --set run.seed="$SEED" \
  --set optim.lr="$LR" --set optim.warmup_steps="$WARMUP" --set run.save_every=100 \
  --set run.eval_every="$EVAL_EVERY" --set data.start_sample="$START"
# Export beside the output first: OUT may be the folder this run started from.
$CC export "$RUN" "$WORK/export" --overwrite --name "$(basename "$OUT")"
SHIP=$WORK/export
if [ -n "$AVERAGE" ]; then
  SHIP=$WORK/export-averaged
  $CC export "$RUN" "$SHIP" --overwrite --name "$(basename "$OUT")" --average-with "$FROM"
fi
rm -rf "$OUT" && cp -r "$SHIP" "$OUT"

mkdir -p "$OUT/eval"
$CC eval --model "$OUT" --task perplexity --data "$HELDOUT" --out "$OUT/eval/perplexity-heldout.json"
$CC eval --model "$OUT" --task perplexity --data "$WORK/corpus/tokens" --split valid --out "$OUT/eval/perplexity.json"
$CC eval --model "$OUT" --task line-completion --data "$HELDOUT" --n "$EVAL_N" --keep-newline \
  --out "$OUT/eval/line-completion-keep-newline.json"
$CC eval --model "$OUT" --task line-completion --data "$HELDOUT" --n "$EVAL_N" --out "$OUT/eval/line-completion.json"
$CC eval --model "$OUT" --task fim --data "$HELDOUT" --n "$EVAL_N" --out "$OUT/eval/fim.json"
$CC eval --model "$OUT" --task humaneval --samples 1 --out "$OUT/eval/humaneval.json"
.venv/bin/python scripts/model_card.py --model "$OUT" --eval "$OUT"/eval/*.json --corpus "${CORPORA[@]}"
