#!/usr/bin/env bash
# pathlab.predict throughput on 10,000 PNG files: decoding versus the model.
# Usage: experiments/throughput/predict_10k_pngs.sh [CKPT]  (default: a fresh `make demo` checkpoint)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
WORK=${WORK:-outputs/throughput_predict}
mkdir -p "$WORK"
CKPT=${1:-}
if [ -z "$CKPT" ]; then
  $PY -m pathlab.train experiment=demo hydra.run.dir="$WORK/demo" > "$WORK/demo.log" 2>&1
  CKPT="$WORK/demo/checkpoints/best.ckpt"
fi
# 10,000 synthetic 28-px PathMNIST look-alikes written as PNG files (the same drawing as data=synthetic)
$PY - "$WORK/pngs" <<'PY'
import sys
from pathlib import Path
from PIL import Image
from pathlab.data.synthetic import synthetic_arrays
out = Path(sys.argv[1])
if not (out / "09999.png").is_file():
    out.mkdir(parents=True, exist_ok=True)
    images = synthetic_arrays(n_train=10000, n_val=0, n_test=0, seed=7)["train_images"]
    for i, image in enumerate(images):
        Image.fromarray(image).save(out / f"{i:05d}.png")
PY
for tta in none d4; do
  $PY -m pathlab.predict ckpt_path="$CKPT" input="$WORK/pngs" tta=$tta hydra.run.dir="$WORK/predict_$tta" \
    output="$WORK/predict_$tta/predictions.csv" | tail -2
  cat "$WORK/predict_$tta/predict.json" | grep -E '"(images|images_per_s|decode_s|model_s|decode_share)"'
done
