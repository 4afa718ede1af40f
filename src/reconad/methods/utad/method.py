"""UTAD: Unsupervised Two-stage Anomaly Detection (Liu, Zhuang, Lu; arXiv 2103.11671).

[paper] Stage one, the impression extractor (IE-Net), turns an image x into a blurry but
anomaly-free *impression* m. Stage two, the Expert-Net, translates between the image and
the impression domain: it puts x's fine detail back onto m's structure, giving a
high-fidelity yet anomaly-free reconstruction x_hat. The intermediate images show why an
image is flagged. Networks: ``ie_net.py``, ``expert_net.py``, ``discriminators.py``;
losses and the map: ``losses.py``.

Training, stage ``impression`` [paper]: 100 * MSE(m, x) + 0.1 * KL of the variational
information head + 0.1 * least-squares GAN against a multi-scale image discriminator +
mutual-information terms between the global code and the local features (1.5 local,
0.5 global). Stage ``expert`` [paper, MUNIT losses] on pairs (x, IE-Net(x)) with IE-Net
frozen: GAN 1 (multi-scale least-squares discriminators on both domains), within-domain
image self-reconstruction L1 10, detail-code L1 1 and content-code L1 1 (codes recovered
from translations made with random detail codes).

Inference [paper, official code]: m = IE-Net(x); x_hat = image decoder(content(m),
detail(x)); naive impressions m_hat_k = impression decoder(content(x), s_k), s_k ~ N(0, I),
k = 1..K; r(a, b) = 1 - SSIM map (window 11, sigma 1.5) on gray images; map
e = max(0, r(x, x_hat) + r(x, mean m_hat) - Var(x_hat samples) - r(x_hat, m)).

Our reading [reconstructed]:
* x_hat samples: the image decoder run on content(m) with the same K random detail codes;
  their per-pixel variance marks where the reconstruction depends on detail that the
  impression cannot fix (a deterministic x_hat alone has no spread). r(x, mean x_hat) uses
  the high-fidelity x_hat itself. The K codes are drawn once (private seed) and stored, so
  scores are deterministic and do not depend on the batch.
* Image score: maximum of the map smoothed by a Gaussian of ``score_sigma`` pixels at
  256 x 256 (scaled with the input side). Residuals are clipped to [0, 1] and all terms
  are in [0, 1] intensity units. The official script's own arithmetic differs in three
  ways, each an option (off by default; measured in README.md): uint8 residuals
  against a variance of 0-255 images (``var_weight=255``), scikit-image's old data range
  of 2 for float SSIM (``ssim_range=2``), and every generated image min-max rescaled onto
  its reference's range before SSIM (``match_range``). Its variance loop does not run as
  published, so none of the three is demonstrably the authors' setting.
* The MI terms (unpublished training code): Deep InfoMax critics on (reparameterised
  global code, 2x2-pooled latent), Jensen-Shannon estimator, negatives by rolling the batch;
  encoder and critics both minimise it. The KL is averaged over code dimensions. The KL
  and MI terms act only through the information head, so ``mutual_info=False`` removes
  the head, the critics and both terms.
* Adam for every group (the IE-Net config lists SGD momentum); IE-Net's image
  discriminator and the MI critics use ``d_lr``; augmentation as in the official loader
  (flips, rotation up to 45 degrees, resized crop 0.8-1) in stage one only.
* Optional ``w_paired`` (ours, 0 in both presets): L1 of the cross-domain translations of a
  pair, decoder_i(content(m), detail(x)) vs x and decoder_m(content(x), detail(m)) vs m.
  It trains the inference path directly; x_hat still sees x only through an 8-d code.

Presets (``config.py``): ``paper`` (meant for 256 x 256, the published widths and
schedule) and ``cpu`` (the default, meant for 128 x 128: about 27 min for both stages on
686 images and 2 cores); costs and probes in README.md.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconad.methods.base import Method, OptimGroup, ScoreOutput, Stage, register
from reconad.methods.blocks import gaussian_init, kaiming_init
from reconad.methods.utad.config import AUGMENTS, PRESETS, UTADConfig
from reconad.methods.utad.discriminators import MultiScaleDiscriminator
from reconad.methods.utad.expert_net import ExpertNet
from reconad.methods.utad.ie_net import IENet, MICritics
from reconad.methods.utad.losses import (
    anomaly_map,
    kl_to_standard_normal,
    lsgan_d,
    lsgan_g,
    match_range,
    mi_jsd,
    residual,
    smoothed_max,
)


def _to_pm1(x: Tensor) -> Tensor:
    return 2.0 * x - 1.0


def _to_01(x: Tensor) -> Tensor:
    return (x + 1.0) / 2.0


@register
class UTAD(Method):
    """Unsupervised two-stage anomaly detection (IE-Net + Expert-Net); see the module doc."""

    name = "utad"
    summary = "UTAD: anomaly-free impression (IE-Net) + detail translation (Expert-Net)"
    provenance = "paper + official code (Liu et al. 2021); MI terms and image score ours"
    has_components = True  # the map mean and the reconstruction SSIM error beside the score
    Config = UTADConfig
    size_multiple = 32
    min_size = 64
    #: images per forward pass when scoring (bounds memory at 256 x 256)
    score_chunk = 32
    #: measured at 128 x 128, cpu preset, 2 threads: 1.44 -> 0.97 s per stage-1 iteration
    #: (batch 32), 1.05 -> 0.77 s per stage-2 iteration (batch 8)
    channels_last = True
    presets = PRESETS

    def __init__(self, config: UTADConfig, channels: int, image_size: tuple[int, int]) -> None:
        super().__init__(config, channels, image_size)
        c = config
        h, w = self.image_size
        if h % self.size_multiple or w % self.size_multiple or min(h, w) < self.min_size:
            raise ValueError(
                f"utad needs sides that are multiples of 32 and at least 64; got {h}x{w}"
            )
        if c.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}; got {c.augment!r}")
        if c.ssim_range <= 0:
            raise ValueError(f"ssim_range must be > 0; got {c.ssim_range}")
        if c.n_samples < 1:
            raise ValueError(f"n_samples (random detail codes) must be >= 1; got {c.n_samples}")
        for key in ("ie_epochs", "expert_epochs", "ie_batch_size", "expert_batch_size"):
            if getattr(c, key) < 1:
                raise ValueError(f"{key} must be >= 1; got {getattr(c, key)}")
        for key in (
            "w_recon",
            "w_kl",
            "w_gan_img",
            "w_mi_local",
            "w_mi_global",
            "w_gan",
            "w_recon_x",
            "w_recon_detail",
            "w_recon_content",
            "w_paired",
            "score_sigma",
            "var_weight",
        ):
            if getattr(c, key) < 0:
                raise ValueError(f"{key} must be >= 0; got {getattr(c, key)}")

        self.ie = IENet(channels, tuple(c.ie_filters), info_head=c.mutual_info)
        self.critics = (
            MICritics(self.ie.code_dim, self.ie.latent_channels, (h // 64, w // 64))
            if c.mutual_info
            else None
        )
        self.image_dis = (
            MultiScaleDiscriminator(channels, c.ie_dis_dim, 3, kind="ie") if c.image_gan else None
        )
        self.expert = ExpertNet(channels, c.expert_dim, c.detail_dim, c.mlp_dim, c.n_res)
        kaiming_init(self.expert)
        if c.expert_gan:
            self.dis_image = MultiScaleDiscriminator(channels, c.dis_dim, c.dis_scales)
            self.dis_impression = MultiScaleDiscriminator(channels, c.dis_dim, c.dis_scales)
            gaussian_init(self.dis_image)
            gaussian_init(self.dis_impression)
        else:
            self.dis_image = self.dis_impression = None
        gen = torch.Generator().manual_seed(2103_11671)
        self.register_buffer("detail_codes", torch.randn(c.n_samples, c.detail_dim, generator=gen))
        # Not a submodule: kornia's sampler state must stay out of the weights file.
        object.__setattr__(self, "_augment", self._make_augment())

    def _make_augment(self) -> nn.Module | None:
        if self.config.augment == "none":
            return None
        ops: list[nn.Module] = [K.RandomHorizontalFlip(), K.RandomVerticalFlip()]
        if self.config.augment == "full":
            ops += [K.RandomRotation(45.0, p=1.0), K.RandomResizedCrop(self.image_size, (0.8, 1.0))]
        return nn.Sequential(*ops)

    # ---- training -------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        c = self.config
        ie = {
            "ie": OptimGroup(
                [self.ie], c.ie_lr, c.ie_weight_decay, milestones=tuple(c.ie_milestones)
            )
        }
        if self.image_dis is not None:
            ie["d_img"] = OptimGroup(
                [self.image_dis], c.d_lr, c.ie_weight_decay, milestones=tuple(c.ie_milestones)
            )
        if self.critics is not None:
            ie["mi"] = OptimGroup(
                [self.critics], c.d_lr, c.ie_weight_decay, milestones=tuple(c.ie_milestones)
            )
        ex_kw = dict(
            weight_decay=c.expert_weight_decay,
            betas=(0.5, 0.999),
            milestones=tuple(c.expert_milestones),
            gamma=c.expert_gamma,
        )
        ex = {"gen": OptimGroup([self.expert], c.expert_lr, **ex_kw)}
        if self.dis_image is not None:
            ex["dis"] = OptimGroup([self.dis_image, self.dis_impression], c.expert_lr, **ex_kw)
        return [
            Stage("impression", c.ie_epochs, ie, batch_size=c.ie_batch_size),
            Stage(
                "expert",
                c.expert_epochs,
                ex,
                batch_size=c.expert_batch_size,
                frozen_target=self._frozen_impression,
            ),
        ]

    def _frozen_impression(self, x: Tensor) -> Tensor:
        """IE-Net's impression of ``x`` with stage 1 frozen (eval mode): stage 2's input pair."""
        self.ie.eval()
        with torch.no_grad():
            return self.ie(x)[0]

    def training_step(
        self, batch: Tensor, stage: str, target: Tensor | None = None
    ) -> dict[str, Tensor]:
        if stage == "impression":
            return self._impression_step(batch)
        if stage == "expert":
            return self._expert_step(batch, target)
        raise ValueError(f"utad has stages 'impression' and 'expert'; got {stage!r}")

    def _impression_step(self, x: Tensor) -> dict[str, Tensor]:
        c = self.config
        if self._augment is not None:
            x = self._augment(x)
        m, latent = self.ie(x)
        loss = c.w_recon * F.mse_loss(m, x)
        out: dict[str, Tensor] = {}
        if self.critics is not None:
            local, mean, log_var = self.ie.info(latent)
            code = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
            g_real, l_real = self.critics(code, local)
            if len(x) > 1:
                g_fake, l_fake = self.critics(code, local.roll(1, 0))
                mi = c.w_mi_local * mi_jsd(l_real, l_fake) + c.w_mi_global * mi_jsd(g_real, g_fake)
            else:  # no negative pair in a batch of one
                mi = 0.0 * (g_real.sum() + l_real.sum())
            loss = loss + c.w_kl * kl_to_standard_normal(mean, log_var) + mi
            out["mi"] = mi
        if self.image_dis is not None:
            loss = loss + c.w_gan_img * lsgan_g(self.image_dis(m))
            out["d_img"] = c.w_gan_img * lsgan_d(self.image_dis(x), self.image_dis(m.detach()))
        return {"ie": loss, **out}

    def _expert_step(self, x: Tensor, m: Tensor | None = None) -> dict[str, Tensor]:
        """Stage 2 on images ``x`` and their frozen impressions ``m`` (the training loop
        computes them once when the stage starts; computed here when not given)."""
        c, e = self.config, self.expert
        if m is None:
            m = self._frozen_impression(x)
        xi, xm = _to_pm1(x), _to_pm1(m)
        c_i, s_i = e.image.encode(xi)
        c_m, s_m = e.impression.encode(xm)
        r_i = torch.randn_like(s_i)
        r_m = torch.randn_like(s_m)
        m2i = e.image.decode(c_m, r_i)  # impression content, random image detail
        i2m = e.impression.decode(c_i, r_m)  # a naive impression
        c_m_rec, r_i_rec = e.image.encode(m2i)
        c_i_rec, r_m_rec = e.impression.encode(i2m)
        gen = (
            c.w_recon_x
            * (
                F.l1_loss(e.image.decode(c_i, s_i), xi)
                + F.l1_loss(e.impression.decode(c_m, s_m), xm)
            )
            + c.w_recon_detail * (F.l1_loss(r_i_rec, r_i) + F.l1_loss(r_m_rec, r_m))
            + c.w_recon_content * (F.l1_loss(c_m_rec, c_m) + F.l1_loss(c_i_rec, c_i))
        )
        if c.w_paired > 0:
            gen = gen + c.w_paired * (
                F.l1_loss(e.image.decode(c_m, s_i), xi)
                + F.l1_loss(e.impression.decode(c_i, s_m), xm)
            )
        if self.dis_image is None:
            return {"gen": gen}
        di, dm = self.dis_image, self.dis_impression
        gen = gen + c.w_gan * (lsgan_g(di(m2i)) + lsgan_g(dm(i2m)))
        dis = c.w_gan * (lsgan_d(di(xi), di(m2i.detach())) + lsgan_d(dm(xm), dm(i2m.detach())))
        return {"gen": gen, "dis": dis}

    # ---- inference ------------------------------------------------------------------
    def impression(self, x: Tensor) -> Tensor:
        """m = IE-Net(x), in [0, 1]."""
        return self.ie(x)[0]

    def reconstruct(self, x: Tensor) -> Tensor:
        """x_hat, the Expert-Net's high-fidelity reconstruction of x, in [0, 1]."""
        return _to_01(self.expert.reconstruct(_to_pm1(x), _to_pm1(self.impression(x))))

    def features(self, x: Tensor) -> Tensor | None:
        """None: multi-view scoring uses the frozen random network for UTAD. The Expert-Net
        encodes an (image, impression) pair, not an image alone; IE-Net's encoder would do,
        but is trained to discard detail into a coarse impression. Not measured either way."""
        return None

    def _explain(self, x: Tensor) -> dict[str, Tensor]:
        """The intermediate images and the map, in chunks (2K + 3 networks run per image)."""
        if len(x) > self.score_chunk:
            parts = [self._explain(c) for c in x.split(self.score_chunk)]
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        e = self.expert
        m = self.impression(x)
        xi = _to_pm1(x)
        c_m = e.impression.content(_to_pm1(m))
        c_x = e.image.content(xi)
        c = self.config
        fit = match_range if c.match_range else (lambda img, ref: img)
        x_hat = fit(_to_01(e.image.decode(c_m, e.image.detail(xi))), m)
        naive, samples = [], []
        for code in self.detail_codes:
            s = code.expand(x.shape[0], -1)  # not len(x): ONNX export traces the batch size
            naive.append(fit(_to_01(e.impression.decode(c_x, s)), x))
            samples.append(fit(_to_01(e.image.decode(c_m, s)), m))
        naive_t = torch.stack(naive)
        amap = anomaly_map(
            x,
            m,
            x_hat,
            naive_t,
            torch.stack(samples),
            var_weight=c.var_weight,
            max_val=c.ssim_range,
        )
        return {
            "impression": m,
            "reconstruction": x_hat,
            "naive_impression": naive_t.mean(0),
            "map": amap,
        }

    def score(self, x: Tensor) -> ScoreOutput:
        parts = self._explain(x)
        sigma = self.config.score_sigma * min(self.image_size) / 256.0
        return ScoreOutput(
            image_score=smoothed_max(parts["map"], sigma),
            anomaly_map=parts["map"],
            extras={"input": x, **parts},
            # alternative image scores: the map's mean, and mean r(x, x_hat) alone
            components={
                "map_mean": parts["map"].flatten(1).mean(1),
                "recon_ssim": residual(x, parts["reconstruction"], max_val=self.config.ssim_range)
                .flatten(1)
                .mean(1),
            },
        )


__all__ = ["UTAD", "UTADConfig"]
