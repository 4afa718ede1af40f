"""Two-stage autoencoder with a RotNet-pretrained encoder and a refinement module (Zhu 2023):
the contract. The networks are in ``network.py``, the card in ``README.md``.

[paper, thesis abstract] The encoder is first trained alone to predict which of four
rotations (0/90/180/270 degrees) was applied to a normal image (RotNet), so it learns
semantic features of the normal class; it is then frozen and a decoder is trained to
reconstruct the image from its features. A refinement module with its own encoder, decoder
and an information-reduction module that lets only minimal information through repairs the
reconstruction's flaws. Scored with the multi-view error of the refined output.

Everything below the abstract is [reconstructed], our reading:

* Encoder (RotNet trunk): three levels of (3x3 conv, BatchNorm, ReLU) then a stride-2 3x3
  conv (BatchNorm, ReLU), widths ``widths``: an image of side s gives ``(widths[-1], s/8, s/8)``.
  Rotation head: global average pool, linear to 4 classes; loss: cross-entropy over the four
  rotated copies of every image in the batch (as RotNet does). Horizontal flips for colour data.
* Decoder: mirror of the encoder (3x3 conv blocks, x2 bilinear upsampling), sigmoid output;
  trained with MSE on the frozen encoder's features (encoder in eval mode: no BatchNorm drift).
* Refinement: its encoder sees the input x beside the coarse reconstruction x_c; its code
  passes the information-reduction bottleneck; its decoder sees the code and, at full
  resolution, x_c, and outputs a correction r of x_c's logits: x_r = sigmoid(logit(x_c) + r),
  its last layer zero-initialised so that refinement starts as the identity on x_c. MSE to x
  (plus the bottleneck's own loss), with encoder and decoder frozen. The bottleneck lets a
  little of x's detail reach the output; too little to carry an anomaly.
* Bottleneck (``bottleneck``): ``memory`` (default; MemAE, Gong et al. 2019: the code becomes a
  sparse, hard-shrunk softmax (of dot products, as MemAE's code) combination of
  ``memory_size`` learned normal prototypes, plus the addressing-entropy loss; the best item
  always survives the shrinkage), ``noise`` (tanh code plus Gaussian noise in training) or
  ``kl`` (variational code with a KL penalty; the mean at test time). Memory is the default
  because it bounds what passes by construction (a mix of normal prototypes), whereas noise
  and KL only bound it on average, trading it against the reconstruction loss.
* Score (``views``): the multi-view error of the final output (refined, or coarse when
  ``refine`` is off): pixel MSE, 1 - SSIM and 1 - cos of the frozen encoder's pooled features,
  each standardised on held-out normals in ``calibrate``, summed. ``rotation`` is an optional
  view of ours, not the thesis's: the rotation head's cross-entropy over the four rotations
  (the RotNet / GeoTrans score). ``score_components`` reports the coarse output's multi-view
  score and the rotation score beside the main one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconad.methods.base import Method, OptimGroup, ScoreOutput, Stage, register
from reconad.methods.maps import feature_dissimilarity, mse_map, ssim_map
from reconad.methods.rotnet_ae.network import Bottleneck, conv_decoder, conv_encoder, run_decoder

ROT_VIEWS = ("mse", "ssim", "feature", "rotation")


@dataclass
class RotNetAEConfig:
    """Hyper-parameters; defaults are the ``paper``-like preset (see ``RotNetAE.presets``)."""

    widths: tuple[int, ...] = (64, 128, 256)
    refine: bool = True
    bottleneck: str = "memory"
    refine_widths: tuple[int, ...] = (32, 64, 128)
    refine_code: int = 16
    memory_size: int = 100
    shrink: float = 2.0
    entropy_weight: float = 2e-4
    noise_std: float = 0.5
    kl_weight: float = 1e-3
    views: tuple[str, ...] = ("mse", "ssim", "feature")
    rot_epochs: int = 50
    dec_epochs: int = 50
    refine_epochs: int = 50
    lr: float = 1e-4
    weight_decay: float = 5e-4
    batch_size: int = 64
    hflip: str = "auto"
    preset: str = "paper"


@register
class RotNetAE(Method):
    """Two-stage autoencoder: RotNet-pretrained frozen encoder, decoder, refinement."""

    name = "rotnet_ae"
    has_components = True  # the coarse view and the rotation view
    channels_last = True  # CIFAR-10, 2 threads: 1 epoch a stage 82.8 -> 55.8 s
    signed_score = True  # a sum of views standardised on held-out normals
    summary = "two-stage AE: RotNet-pretrained frozen encoder, decoder, refinement; multi-view"
    provenance = "reconstructed from a thesis abstract (Zhu 2023); architecture ours"
    Config = RotNetAEConfig
    size_multiple = 8
    min_size = 16
    presets = {
        # First key = default: narrow and short enough for a CPU (minutes per class).
        "cpu": {
            "widths": (32, 64, 128),
            "refine_widths": (16, 32, 64),
            "rot_epochs": 10,
            "dec_epochs": 15,
            "refine_epochs": 10,
            "lr": 1e-3,
        },
        "paper": {},
    }

    def __init__(self, config: RotNetAEConfig, channels: int, image_size: tuple[int, int]):
        super().__init__(config, channels, image_size)
        h, w = self.image_size
        if h % 8 or w % 8 or h != w:
            raise ValueError(f"rotnet_ae needs square sides that are multiples of 8; got {h}x{w}")
        if set(config.views) - set(ROT_VIEWS) or not config.views:
            raise ValueError(f"views must be a non-empty subset of {ROT_VIEWS}; got {config.views}")
        if config.hflip not in ("auto", "on", "off"):
            raise ValueError(f"hflip must be 'auto', 'on' or 'off'; got {config.hflip!r}")
        wd = tuple(config.widths)
        self.encoder = conv_encoder(channels, wd)
        self.rot_head = nn.Linear(wd[-1], 4)
        self.decoder = conv_decoder(wd[-1], wd, channels)
        if config.refine:
            rw, k = tuple(config.refine_widths), config.refine_code
            self.r_encoder = nn.Sequential(conv_encoder(2 * channels, rw), nn.Conv2d(rw[-1], k, 1))
            self.code_shape = (k, h // 2 ** len(rw), w // 2 ** len(rw))
            dim = k * self.code_shape[1] * self.code_shape[2]
            self.bottleneck = Bottleneck(config.bottleneck, dim, config)
            self.r_decoder = conv_decoder(k, rw, channels, extra=channels)
            nn.init.zeros_(self.r_decoder[-1].weight)  # starts as the identity on x_c
            nn.init.zeros_(self.r_decoder[-1].bias)
        n = len(config.views)
        # Row 0: views of the final output, row 1: of the coarse one (float64: tiny stds).
        self.register_buffer("view_mean", torch.zeros(2, n, dtype=torch.float64))
        self.register_buffer("view_std", torch.ones(2, n, dtype=torch.float64))

    # ---- networks ----------------------------------------------------------------------
    def features(self, x: Tensor) -> Tensor:
        """The frozen RotNet encoder's features, global-average pooled: ``(B, widths[-1])``."""
        return self.encoder(x).mean((2, 3))

    def coarse(self, x: Tensor) -> Tensor:
        return run_decoder(self.decoder, self.encoder(x))

    def refined(self, x: Tensor, x_c: Tensor) -> tuple[Tensor, Tensor]:
        z = self.r_encoder(torch.cat([x, x_c], 1)).flatten(1)
        z, aux = self.bottleneck(z)
        r = run_decoder(self.r_decoder, z.view(-1, *self.code_shape), x_c, logits=True)
        return torch.sigmoid(torch.logit(x_c, eps=1e-4) + r), aux

    def reconstruct(self, x: Tensor) -> Tensor:
        """The final output: refined when ``refine`` is on, else the coarse reconstruction."""
        x_c = self.coarse(x)
        return self.refined(x, x_c)[0] if self.config.refine else x_c

    def rotation_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits of the four rotated copies of x ``(4B, 4)`` and their labels."""
        xs = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
        labels = torch.arange(4, device=x.device).repeat_interleave(len(x))
        return self.rot_head(self.encoder(xs).mean((2, 3))), labels

    def rotation_score(self, x: Tensor) -> Tensor:
        """The rotation head's cross-entropy over the four rotations of each image ``(B,)``.

        One rotation at a time (the encoder is in eval mode, so each image is scored
        independently): a batch of 256 gray 128x128 images peaked at 1.6 GB this way against
        5.2 GB for the four copies at once (measured; a Magnetic-Tile run peaked at 5.6 GB).
        """
        ce = []
        for k in range(4):
            logits = self.rot_head(self.encoder(torch.rot90(x, k, dims=(2, 3))).mean((2, 3)))
            # x.shape[0], not len(x): an ONNX export traces it as the batch size
            label = torch.full((x.shape[0],), k, dtype=torch.long, device=x.device)
            ce.append(F.cross_entropy(logits, label, reduction="none"))
        return torch.stack(ce).mean(0)

    # ---- training ----------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        c = self.config
        bs = c.batch_size

        def group(*mods: nn.Module) -> dict[str, OptimGroup]:
            return {"model": OptimGroup(list(mods), c.lr, c.weight_decay, milestones=(0.8,))}

        out = [
            Stage("rotnet", c.rot_epochs, group(self.encoder, self.rot_head), bs),
            Stage("decoder", c.dec_epochs, group(self.decoder), bs),
        ]
        if c.refine:
            mods = [self.r_encoder, self.bottleneck, self.r_decoder]
            out.append(Stage("refine", c.refine_epochs, group(*mods), bs))
        return out

    def training_step(self, batch: Tensor, stage: str) -> Tensor:
        flips = self.config.hflip == "on" or (self.config.hflip == "auto" and self.channels == 3)
        if flips:
            flip = torch.rand(len(batch), device=batch.device) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
        if stage == "rotnet":
            logits, labels = self.rotation_logits(batch)
            return F.cross_entropy(logits, labels)
        self.encoder.eval()  # frozen: no gradient and no BatchNorm statistics drift
        with torch.no_grad():
            feats = self.encoder(batch)
        if stage == "decoder":
            return F.mse_loss(run_decoder(self.decoder, feats), batch)
        if stage == "refine":
            self.decoder.eval()
            with torch.no_grad():
                x_c = run_decoder(self.decoder, feats)
            x_r, aux = self.refined(batch, x_c)
            return F.mse_loss(x_r, batch) + aux
        raise ValueError(f"rotnet_ae has no stage {stage!r}")

    # ---- scoring -----------------------------------------------------------------------
    def _views(self, x: Tensor, out: Tensor, rot: Tensor | None) -> Tensor:
        """Raw views ``(B, n_views)`` of reconstruction ``out`` of x."""
        cols = []
        for v in self.config.views:
            if v == "mse":
                cols.append(mse_map(x, out).flatten(1).mean(1))
            elif v == "ssim":
                cols.append(ssim_map(x, out).flatten(1).mean(1))
            elif v == "feature":
                cols.append(feature_dissimilarity(self.features(x), self.features(out)).float())
            else:
                cols.append(rot)
        return torch.stack(cols, 1)

    def _all(self, x: Tensor) -> dict[str, Tensor]:
        x_c = self.coarse(x)
        x_f = self.refined(x, x_c)[0] if self.config.refine else x_c
        rot = self.rotation_score(x) if "rotation" in self.config.views else None
        return {
            "coarse": x_c,
            "final": x_f,
            "v_final": self._views(x, x_f, rot),
            "v_coarse": self._views(x, x_c, rot),
            "rot": rot,
        }

    @classmethod
    def needs_held_out(cls, config) -> bool:
        """See :meth:`Method.needs_held_out`."""
        return True  # every view is standardised

    def calibrate(self, normals: Tensor) -> None:
        """Per-view mean and standard deviation on held-out normal images."""
        parts = [self._all(normals[i : i + 256]) for i in range(0, len(normals), 256)]
        for row, key in enumerate(("v_final", "v_coarse")):
            v = torch.cat([p[key] for p in parts]).double()
            self.view_mean[row] = v.mean(0)
            std = v.std(0) if len(v) > 1 else torch.ones_like(v[0])
            self.view_std[row] = std.clamp_min(1e-12)

    def _fused(self, v: Tensor, row: int) -> Tensor:
        return ((v.double() - self.view_mean[row]) / self.view_std[row]).sum(1).float()

    def score(self, x: Tensor) -> ScoreOutput:
        a = self._all(x)
        views = list(self.config.views)
        amap = torch.zeros_like(x[:, :1])
        if "mse" in views:
            amap = amap + mse_map(x, a["final"]) / self.view_std[0, views.index("mse")].float()
        if "ssim" in views:
            amap = amap + ssim_map(x, a["final"]) / self.view_std[0, views.index("ssim")].float()
        rot = a["rot"] if a["rot"] is not None else self.rotation_score(x)  # once per batch
        return ScoreOutput(
            image_score=self._fused(a["v_final"], 0),
            anomaly_map=amap,
            extras={"input": x, "coarse": a["coarse"], "refined": a["final"], "error": amap},
            # the multi-view score without refinement, and RotNet's score
            components={"coarse": self._fused(a["v_coarse"], 1), "rotation": rot},
        )
