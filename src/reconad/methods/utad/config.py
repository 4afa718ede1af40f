"""UTAD's hyper-parameters and presets.

Defaults are the ``paper`` preset [paper, official configs]; ``cpu`` overrides widths and
schedule so that both stages train on 686 images at 128 x 128 in about 27 min on 2 cores
(measurements in README.md, the card).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

AUGMENTS = ("full", "flip", "none")
_DECAY_EVERY_TENTH = tuple(round(0.1 * i, 1) for i in range(1, 10))


@dataclass
class UTADConfig:
    """UTAD hyper-parameters; defaults are the ``paper`` preset (see ``UTAD.presets``)."""

    # stage 1: IE-Net
    ie_filters: tuple[int, ...] = (32, 64, 128)
    ie_epochs: int = 400
    ie_batch_size: int = 128
    ie_lr: float = 1e-3
    ie_weight_decay: float = 1e-4
    ie_milestones: tuple[float, ...] = (0.5, 0.875)  # epochs 200 and 350 of 400
    ie_dis_dim: int = 32
    d_lr: float = 1e-4
    w_recon: float = 100.0
    w_kl: float = 0.1
    w_gan_img: float = 0.1
    w_mi_local: float = 1.5
    w_mi_global: float = 0.5
    image_gan: bool = True
    mutual_info: bool = True
    augment: str = "full"
    # stage 2: Expert-Net
    expert_dim: int = 64
    mlp_dim: int = 256
    detail_dim: int = 8
    n_res: int = 2
    dis_dim: int = 64
    dis_scales: int = 3
    expert_epochs: int = 730  # the paper's 500k iterations at batch 1, on 686 images
    expert_batch_size: int = 1
    expert_lr: float = 1e-4
    expert_weight_decay: float = 1e-4
    expert_milestones: tuple[float, ...] = _DECAY_EVERY_TENTH
    expert_gamma: float = 0.5
    w_gan: float = 1.0
    w_recon_x: float = 10.0
    w_recon_detail: float = 1.0
    w_recon_content: float = 1.0
    w_paired: float = 0.0  # ours: L1 of paired cross-domain translations
    expert_gan: bool = True
    # inference
    n_samples: int = 10
    score_sigma: float = 4.0
    # scoring variants of the official script's arithmetic (README.md); off = ours
    var_weight: float = 1.0  # 255: its uint8 residuals against a variance of 0-255 images
    ssim_range: float = 1.0  # 2: scikit-image's old data range for float images
    match_range: bool = False  # rescale generated images onto the reference's range
    preset: str = "paper"


PRESETS: dict[str, dict[str, Any]] = {
    # First key = default; chosen in README.md (<= 30 min on 2 cores, 686 images).
    "cpu": {
        "ie_filters": (8, 16, 32),
        "ie_epochs": 30,
        "ie_batch_size": 32,
        "expert_dim": 8,
        "mlp_dim": 32,
        "dis_dim": 8,
        # 16, not 20: 20 took 31.8 min on the slowest 2-core host we measured (README.md)
        "expert_epochs": 16,
        "expert_batch_size": 8,
        "expert_lr": 4e-4,
        "expert_milestones": (0.5, 0.8),
    },
    "paper": {},
}

__all__ = ["AUGMENTS", "PRESETS", "UTADConfig"]
