#!/usr/bin/env bash
# Loss ablation: CE vs focal (gamma 1/2/3 x alpha none/balanced) x TTA none/d4 x 3 seeds.
# Every run logs both the D4-TTA and the plain (no-TTA) test metrics, so TTA needs no extra runs.
# Usage: experiments/loss_ablation/run.sh   (or: make ablation); OUT=... SEEDS=0,1,2 to change.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/loss_ablation}
SEEDS=${SEEDS:-0,1,2}
REAL=${REAL:-../shared/data/pathmnist_real_1k.npz}

ablate() {  # ablate NAME OVERRIDES... : 3 CE runs and 18 focal runs, then one summary
  local name=$1
  shift
  "$PY" -m pathlab.train -m "$@" loss=ce "seed=$SEEDS" "hydra.sweep.dir=$OUT/$name/ce"
  "$PY" -m pathlab.train -m "$@" loss=focal loss.gamma=1,2,3 loss.alpha=none,balanced "seed=$SEEDS" \
    "hydra.sweep.dir=$OUT/$name/focal"
  "$PY" -m pathlab.summarize "$OUT/$name/ce" "$OUT/$name/focal" --out "$OUT/$name"
}

# 1. synthetic data (built in): the demo recipe, shortened
ablate synthetic experiment=demo data.synthetic.n_train=3000 trainer.max_epochs=4 '~callbacks.rich_progress_bar'

# 2. real tissue: the 1,000-image PathMNIST sample, first 700 / next 100 / last 200 as train / val / test
if [ -f "$REAL" ]; then
  "$PY" -c "from pathlab.data.npz import resplit_npz; resplit_npz('$REAL', '$OUT/real_1k_data/pathmnist.npz', {'train': 700, 'val': 100, 'test': 200})"
  ablate real_1k "data.root=$OUT/real_1k_data" data.download=false data.batch_size=64 model.stem=imagenet \
    model.width=32 scheduler=onecycle optim.lr=0.003 trainer.max_epochs=15 '~callbacks.rich_progress_bar'
else
  echo "skipping the real-tissue ablation: $REAL is absent"
fi
