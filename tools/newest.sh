#!/usr/bin/env bash
# Install the newest versions settings.ini's ranges allow into a fresh venv, then run the README's commands.
# Usage: tools/newest.sh [VENV]   (default: .venv-newest). Downloads PyTorch and friends: run it where that is fine.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-newest}
OUT=$(mktemp -d)
python3 -m venv "$VENV"
"$VENV/bin/pip" install --upgrade pip
"$VENV/bin/pip" install --upgrade --upgrade-strategy eager -e .   # the ranges only: no constraints file
"$VENV/bin/pip" freeze | grep -iE '^(torch|torchvision|fastai|fastcore|timm|onnxruntime)==' || true
"$VENV/bin/pet_breeds"                                              # every command, one line each
"$VENV/bin/pet_breeds_train" --out "$OUT/pets"                      # the README's main command: the bundled sample
"$VENV/bin/pet_breeds_predict" "$OUT/pets/model" "$("$VENV/bin/pet_breeds_sample")" --k 1 >/dev/null
"$VENV/bin/pet_breeds_export" "$OUT/pets/model"
"$VENV/bin/pet_breeds_predict" "$OUT/pets/model/model.onnx" "$("$VENV/bin/pet_breeds_sample")" --k 1 >/dev/null
for c in $("$VENV/bin/pet_breeds" | cut -d' ' -f1); do "$VENV/bin/$c" --help >/dev/null; done
echo "newest versions: the README's commands ran; outputs in $OUT"
