#!/usr/bin/env bash
# Issue 5's ablation on one data set, all classes, one-class protocol, leakage-free:
# plain AE (MSE); AE + multiview; AE + multiview + entropy (divide, subtract); rotnet_ae
# (its "coarse" component is the score without refinement). The AE variants are scoring
# options of one set of trained networks: one `ae` run scores all of them (--also-score),
# each fitted on the same held-out normals. Every run is resumable (finished class/seed
# runs are skipped), so the script can be stopped and re-run. Then:
# python benchmarks/ablation_table.py DATASET
#
#   bash benchmarks/scoring_ablation.sh fmnist [SEEDS] [DATA_ROOT]
set -euo pipefail
D=${1:?dataset: fmnist or cifar10}
SEEDS=${2:-0}
ROOT=${3:-../shared/data}
B="reconad benchmark --dataset $D --classes 0-9 --seeds $SEEDS --data-root $ROOT"
$B --method ae --also-score multiview,multiview+entropy,multiview+entropy-subtract
$B --method rotnet_ae
