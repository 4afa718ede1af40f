#!/usr/bin/env bash
# Issue 5's ablation on one data set, all classes, one-class protocol, leakage-free:
# plain AE (MSE); AE + multiview; AE + multiview + entropy (divide, subtract); rotnet_ae
# (its "coarse" component is the score without refinement). Each variant writes its own
# results folder and is resumable (finished class/seed runs are skipped), so the script can
# be stopped and re-run. Then: python benchmarks/ablation_table.py DATASET
#
#   bash benchmarks/scoring_ablation.sh fmnist [SEEDS] [DATA_ROOT]
set -euo pipefail
D=${1:?dataset: fmnist or cifar10}
SEEDS=${2:-0}
ROOT=${3:-../shared/data}
B="reconad benchmark --dataset $D --classes 0-9 --seeds $SEEDS --data-root $ROOT"
$B --method ae
$B --method ae --score multiview
$B --method ae --score multiview --difficulty entropy --difficulty-mode divide
$B --method ae --score multiview --difficulty entropy --difficulty-mode subtract
$B --method rotnet_ae
