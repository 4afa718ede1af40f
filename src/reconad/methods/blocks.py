"""Building blocks that several methods share: convolution blocks and weight initialisers.

Networks stay in each method's ``network.py``; what two or more of them build the same way
lives here, so it is written once. Every block keeps the child order (and so the state-dict
names and the order in which layers draw their initial weights) of the code it replaced.
"""

from __future__ import annotations

from torch import nn


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1, bias: bool = True) -> list[nn.Module]:
    """A 3x3 convolution (padding 1), BatchNorm and an in-place ReLU, as a list of layers.

    Args:
        c_in: input channels.
        c_out: output channels.
        stride: the convolution's stride.
        bias: whether the convolution has a bias (BatchNorm makes it redundant).
    """
    return [
        nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=bias),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class DoubleConv(nn.Sequential):
    """Two :func:`conv_bn_relu` layers, ``c_in -> c_mid -> c_out``: the U-Net's block.

    Args:
        c_in: input channels.
        c_out: output channels.
        c_mid: channels between the two convolutions (default ``c_out``).
        bias: whether the convolutions have biases.
    """

    def __init__(self, c_in: int, c_out: int, c_mid: int | None = None, bias: bool = True) -> None:
        c_mid = c_out if c_mid is None else c_mid
        super().__init__(
            *conv_bn_relu(c_in, c_mid, bias=bias), *conv_bn_relu(c_mid, c_out, bias=bias)
        )


def he_init(
    module: nn.Module,
    slope: float = 0.2,
    layers: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear),
) -> None:
    """He (Kaiming-normal, fan-in) weights for LeakyReLU stacks, zero biases.

    Used by the Bergmann autoencoders: PyTorch's default (uniform, a = sqrt(5)) shrinks the
    signal through their 18 layers without normalisation, and such a network first learns
    to output the mean image and only slowly leaves it. Measured on Fashion-MNIST class 0,
    15 epochs: training loss 0.027 (default) vs 0.012 (He), AUROC 88.3 vs 90.6.

    Args:
        module: every submodule of one of the ``layers`` types is initialised.
        slope: the LeakyReLU's negative slope (0 for ReLU).
        layers: the layer types to initialise.
    """
    for m in module.modules():
        if isinstance(m, layers):
            nn.init.kaiming_normal_(m.weight, a=slope, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def kaiming_init(module: nn.Module) -> None:
    """Kaiming-normal (fan-in, ReLU gain) weights and zero biases of every Conv2d and Linear:
    the initialisation of MUNIT's generators (UTAD's Expert-Net)."""
    he_init(module, slope=0, layers=(nn.Conv2d, nn.Linear))


def gaussian_init(module: nn.Module, std: float = 0.02) -> None:
    """N(0, ``std``) weights and zero biases of every Conv2d and Linear (MUNIT's
    discriminator initialisation)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation, which DRAEM's official code uses: convolution weights
    N(0, 0.02) (biases keep PyTorch's default), batch-norm scales N(1, 0.02) and shifts 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


__all__ = ["DoubleConv", "conv_bn_relu", "dcgan_init", "gaussian_init", "he_init", "kaiming_init"]
