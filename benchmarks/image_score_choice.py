"""Add the leakage-free image-score choice to industrial records made before it was recorded.

`reconad benchmark` on an industrial set now records, for a map method, the image score that
`image_score="auto"` chooses on the seed's held-out normals and the same images with
synthetic defects (`image_score_choice`), and that score's test AUROC (`auroc_chosen`, read
off the scores the record already has). A record made before has neither. Given the models
the run kept (`--save-models DIR`), this script rebuilds each seed's held-out split (the
same seeded split the run used), makes the choice with the saved model, and adds the two
entries to the seed's JSON; nothing else in the record changes, and no test label is read
to choose. Records that already hold a choice are left alone unless ``--redo`` (e.g. after
the choice's rule changed: fainter probe defects when the first probe saturates).

    python benchmarks/image_score_choice.py benchmarks/results/magnetic-tile/draem \
        --models ../models/mt-draem --data-root ../shared/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reconad import Detector
from reconad.data.folders import read_mvtec
from reconad.data.protocol import holdout_split
from reconad.protocols.industrial import collect_industrial, image_score_entries, resolve_category
from reconad.serialize import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="an industrial results folder (seed*.json)")
    ap.add_argument("--models", type=Path, required=True, help="the run's --save-models folder")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--redo", action="store_true", help="choose again where a choice exists")
    args = ap.parse_args()
    for rec in collect_industrial(args.results):
        seed = rec["seed"]
        if "image_score_choice" in rec and not args.redo:
            print(f"seed {seed}: already chosen ({rec['image_score_choice']['chosen']})")
            continue
        st = rec["settings"]
        det = Detector.load(args.models / f"seed{seed}")
        _, path = resolve_category(st["dataset"], args.data_root)
        side = st["size"]
        train = read_mvtec(path, "train", size=(side, side), channels=st["channels"])
        _, val = holdout_split(train, st["val_fraction"], seed)
        if len(val) != rec["n_val"]:
            raise SystemExit(f"seed {seed}: {len(val)} held-out images, the run had {rec['n_val']}")
        choice = det.image_score_choice(val)
        rec.update(image_score_entries(det, rec, choice))
        rec["image_score_choice"]["added_by"] = "benchmarks/image_score_choice.py"
        write_json(args.results / f"seed{seed}.json", rec)
        print(
            f"seed {seed}: chose {choice.name} at defect strength {choice.strength:g} "
            f"({', '.join(f'{k} {100 * v:.1f}' for k, v in choice.aurocs.items())}); "
            f"its test AUROC {rec['auroc_chosen']:.1f} (native {rec['auroc']:.1f})"
        )


if __name__ == "__main__":
    main()
