"""The small classifier that the adversarial examples are crafted against."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconad.serialize import load_tensors, save_tensors, write_json


class SmallCNN(nn.Module):
    """Three (3x3 conv, BatchNorm, ReLU, 2x2 max-pool) blocks of width w, 2w, 4w, global
    average pooling, a linear layer: fast on a CPU, ~90% on Fashion-MNIST."""

    def __init__(self, channels: int, n_classes: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for w in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean((2, 3)))


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    epochs: int = 10,
    width: int = 32,
    seed: int = 0,
    lr: float = 1e-3,
    batch_size: int = 128,
) -> SmallCNN:
    """Train a SmallCNN on uint8 ``(N, C, H, W)`` images (Adam; flips for colour data)."""
    torch.manual_seed(seed)
    model = SmallCNN(images.shape[1], n_classes, width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x_all), generator=gen).split(batch_size):
            x = x_all[idx].float() / 255.0
            if x.shape[1] == 3:  # horizontal flips for natural (colour) images
                flip = torch.rand(len(x), generator=gen) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = F.cross_entropy(model(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def predict(model: nn.Module, images: np.ndarray | Tensor, batch_size: int = 512) -> np.ndarray:
    """Class predictions of uint8 arrays (0-255) or float tensors in [0, 1]."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size]
            x = torch.from_numpy(x).float() / 255.0 if isinstance(x, np.ndarray) else x
            out.append(model(x).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def get_classifier(
    folder: Path, train, test, epochs: int = 10, width: int = 32, seed: int = 0, log=print
) -> tuple[SmallCNN, dict]:
    """The data set's classifier: loaded from ``folder`` when a matching one is there, else
    trained on the whole training split, evaluated on the test split and saved."""
    folder = Path(folder)
    n_classes = len(train.class_names or []) or int(train.labels.max()) + 1
    meta_path, weights = folder / "classifier.json", folder / "classifier.safetensors"
    wanted = {"epochs": epochs, "width": width}
    wanted |= {"seed": seed, "n_classes": n_classes, "n_train": len(train)}
    if meta_path.exists() and weights.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in wanted} == wanted:
            model = SmallCNN(train.channels, n_classes, width)
            model.load_state_dict(load_tensors(weights))
            return model.eval(), meta
    log(f"training the classifier ({epochs} epochs on {len(train)} images)")
    t0 = time.perf_counter()
    model = train_classifier(
        train.images,
        train.labels,
        n_classes,
        epochs,
        width,
        seed,
    )
    acc = float((predict(model, test.images) == test.labels).mean())
    meta = {**wanted, "test_accuracy": 100 * acc, "seconds": round(time.perf_counter() - t0, 1)}
    save_tensors(weights, model.state_dict())
    write_json(meta_path, meta)
    log(f"classifier: clean test accuracy {100 * acc:.1f}%")
    return model, meta
