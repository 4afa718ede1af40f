#!/usr/bin/env bash
# DRAEM cpu preset: the learning-rate probe behind its lr (3e-4), on Magnetic-Tile training
# images only. 600 steps per rate (the loop rounds up to whole epochs: 680), seed 0, 128 x 128;
# each run's criteria are its training loss and the AUROC between its 76 held-out normal
# training images and the same images with synthetic defects (what `fit` prints as
# "image score: ..."); no test image is read. About 7.5 min per rate on 2 idle cores.
#   . .venv/bin/activate; bash benchmarks/draem_lr_probe.sh [OUT] ; OUT default ../probe
set -euo pipefail
OUT=${1:-../probe}
ROOT=${DATA_ROOT:-../shared/data}
for lr in 1e-4 3e-4 1e-3; do
  echo "== lr $lr $(date -u +%T)"
  reconad fit --data "$ROOT/magnetic-tile" --image-size 128 --method draem --set steps=600 \
    --set lr=$lr --out "$OUT/lr-$lr" --no-progress
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
rows = {}
for d in sorted(Path(sys.argv[1]).glob("lr-*")):
    c = json.loads((d / "config.json").read_text())
    tr, sc = c["training"], c["scoring"]
    rows[d.name[3:]] = {
        "steps": tr["steps"], "fit_seconds": tr["seconds"],
        "loss_per_epoch": [round(h["loss"], 4) for h in tr["history"]],
        "synthetic_auroc": {k: round(100 * v, 1) for k, v in sc["image_score_auroc"].items()},
        "versions": c["versions"],
    }
print(json.dumps(rows, indent=1))
PY
