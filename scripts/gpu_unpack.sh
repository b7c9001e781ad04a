#!/usr/bin/env bash
# Join what scripts/gpu_train.sh returned (export.tar.part*) into runs/gpu-export; then evaluate it
# with the card's commands and, if it scores better, replace models/codecomplete-tiny-py with it.
set -euo pipefail
cd "$(dirname "$0")/.."
FROM=${1:?usage: gpu_unpack.sh <files_at folder of the device call>}
mkdir -p runs && rm -rf runs/export
cat "$FROM"/export.tar.part* | tar -C runs -xf -
rm -rf runs/gpu-export && mv runs/export runs/gpu-export
ls -la runs/gpu-export
