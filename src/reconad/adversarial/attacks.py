"""FGSM and PGD (L-infinity): from the Adversarial Robustness Toolbox when it is installed,
else the plain-torch versions here, which follow the same definitions.

torchattacks was not used: it requires torchvision, whose wheels do not load against the
CPU build of torch these machines use (and installing it would replace torch itself).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ATTACKS = ("fgsm", "pgd")
BACKENDS = ("auto", "art", "torch")


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): x + eps sign(grad), in [0, 1]."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L-infinity projected gradient descent (Madry et al. 2018): a random start in the
    eps-ball, then ``steps`` signed-gradient steps of ``step_size`` (default 2.5 eps /
    steps), each projected back onto the eps-ball around x and onto [0, 1]."""
    step = 2.5 * eps / steps if step_size is None else step_size
    adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1
        adv = (x + eps * noise.to(x.device)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(adv), y), adv)
        adv = adv.detach() + step * grad.sign()
        adv = torch.minimum(torch.maximum(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def art_available() -> bool:
    try:
        import art  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``art`` when the Adversarial Robustness Toolbox imports, else ``torch``."""
    if backend not in BACKENDS:
        raise ValueError(f"attack backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "art" and not art_available():
        raise ValueError("backend 'art' needs: pip install adversarial-robustness-toolbox")
    return ("art" if art_available() else "torch") if backend == "auto" else backend


def attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    name: str,
    eps: float,
    backend: str = "auto",
    pgd_steps: int = 10,
    seed: int = 0,
    batch_size: int = 256,
) -> Tensor:
    """Adversarial versions of images ``x`` (float, [0, 1]) with true labels ``y``."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose from {ATTACKS}")
    if not 0 < eps <= 1:
        raise ValueError(f"epsilon must be in (0, 1] (pixel scale); got {eps}")
    model.eval()
    if resolve_backend(backend) == "art":
        return _art_attack(model, x, y, name, eps, pgd_steps, seed, batch_size)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        if name == "fgsm":
            out.append(fgsm(model, xb, yb, eps))
        else:
            out.append(pgd(model, xb, yb, eps, pgd_steps, generator=gen))
    return torch.cat(out)


def _art_attack(model, x, y, name, eps, steps, seed, batch_size) -> Tensor:
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(
        model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=int(model.head.out_features) if hasattr(model, "head") else int(y.max()) + 1,
        clip_values=(0.0, 1.0),
        device_type="gpu" if x.is_cuda else "cpu",
    )
    if name == "fgsm":
        atk = FastGradientMethod(clf, norm=np.inf, eps=eps, batch_size=batch_size)
    else:
        np.random.seed(seed)  # ART draws the random start from numpy's global generator
        atk = ProjectedGradientDescent(
            clf,
            norm=np.inf,
            eps=eps,
            eps_step=2.5 * eps / steps,
            max_iter=steps,
            num_random_init=1,
            batch_size=batch_size,
            verbose=False,
        )
    adv = atk.generate(x.detach().cpu().numpy(), y=y.cpu().numpy())
    return torch.from_numpy(adv).to(x)


def to_uint8(x: Tensor) -> np.ndarray:
    """Round images in [0, 1] to 8 bits, as saving them would."""
    return torch.round(x.clamp(0, 1) * 255).to(torch.uint8).numpy()


def parse_epsilons(spec: str) -> tuple[float, ...]:
    """``"2/255,8/255"`` or ``"0.01,0.03"`` -> epsilons on the [0, 1] pixel scale."""
    out = []
    for part in spec.split(","):
        part = part.strip()
        try:
            num, _, den = part.partition("/")
            eps = float(num) / (float(den) if den else 1.0)
        except ValueError:
            raise ValueError(f"cannot read epsilon {part!r} (try 8/255 or 0.03)") from None
        if not 0 < eps <= 1:
            raise ValueError(f"epsilon {part!r} is outside (0, 1] on the [0, 1] pixel scale")
        out.append(eps)
    return tuple(out)
