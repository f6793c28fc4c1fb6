"""The one builder of the registered models' layers (torchvision's ``make_layers(cfg)`` style).

A feature extractor is data: a list of ``"A"`` (2x2 average pooling), ``channels`` (a 3x3
conv) or ``(channels, kernel_size)``. :func:`make_features` turns it into
``conv [-> BN] -> act [-> dropout]`` layers, :func:`make_classifier` builds the fully
connected head, and :func:`conv_act` is the conv unit the ResNet shares. The activation is
injected as a layer factory (``act_layer``, see :func:`lightning_snn.activations.make_activation`).

Qualified names are part of the interface: thresholds and checkpoints are keyed by them. So
optional layers (batch norm, dropout) are only inserted when asked for, and without them a
conv at index ``i`` of a ``Sequential`` has its activation at ``i + 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from lightning_snn.activations import ActLayer

#: ``"A"`` = 2x2 average pooling; an int = a 3x3 conv with that many output channels; a
#: ``(channels, kernel_size)`` pair = a conv with another (odd) kernel size, same padding.
FeatureConfig = Sequence[int | str | tuple[int, int]]


def scaled(channels: int, width: float) -> int:
    """``channels * width``, rounded, at least 1."""
    return max(1, int(round(channels * width)))


def init_conversion_weights(model: nn.Module) -> None:
    """Sengupta et al. (2018) initialisation: conv weights ~ N(0, sqrt(2 / (k^2 n))), zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)


def conv_bn(
    in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, batch_norm: bool = False
) -> list[nn.Module]:
    """``conv [-> BN]`` with "same" padding; the conv has no bias when BN follows (BN's shift replaces it)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=not batch_norm)
    return [conv, nn.BatchNorm2d(out_ch)] if batch_norm else [conv]


def conv_act(
    in_ch: int, out_ch: int, act_layer: ActLayer, kernel_size: int = 3, stride: int = 1, batch_norm: bool = False
) -> list[nn.Module]:
    """``conv [-> BN] -> act``, as a flat list to splice into a ``Sequential``."""
    return [*conv_bn(in_ch, out_ch, kernel_size, stride, batch_norm), act_layer()]


def with_one_by_one_last(config: FeatureConfig) -> list:
    """``config`` with a 1x1 kernel for the last conv of every stage of three convs (the authors' VGG-16)."""
    out = list(config)
    run = 0  # convs since the last pooling
    for i, item in enumerate(config):
        run = 0 if item == "A" else run + 1
        if run == 3 and (i + 1 == len(config) or config[i + 1] == "A"):  # a stage ends at a pool or the end
            out[i] = (item, 1)
    return out


def make_features(
    config: FeatureConfig,
    act_layer: ActLayer,
    width: float = 1.0,
    input_size: int = 32,
    conv_dropout: float = 0.0,
    batch_norm: bool = False,
    in_channels: int = 3,
) -> tuple[nn.Sequential, int, int]:
    """The conv feature extractor of ``config`` (VGG, CIFARNet).

    Args:
        config: see :data:`FeatureConfig`.
        act_layer: builds one activation module per conv.
        width: multiplier on every channel count.
        input_size: input height = width in pixels.
        conv_dropout: dropout after the activation of a conv that another conv follows (0 = none).
        batch_norm: a ``BatchNorm2d`` between every conv and its activation.
        in_channels: image channels.

    Returns:
        ``(features, out_channels, out_size)``: the ``Sequential``, its output channels and
        output height = width.
    """
    layers: list[nn.Module] = []
    in_ch, n_pool = in_channels, 0
    for i, item in enumerate(config):
        if item == "A":
            layers.append(nn.AvgPool2d(2))
            n_pool += 1
            continue
        channels, kernel = item if isinstance(item, tuple) else (item, 3)
        out_ch = scaled(channels, width)
        layers += conv_act(in_ch, out_ch, act_layer, kernel, batch_norm=batch_norm)
        if conv_dropout > 0 and i + 1 < len(config) and config[i + 1] != "A":
            layers.append(nn.Dropout(conv_dropout))
        in_ch = out_ch
    size = input_size // 2**n_pool
    if size < 1:
        raise ValueError(f"input_size {input_size} is too small for {n_pool} 2x2 poolings.")
    return nn.Sequential(*layers), in_ch, size


def make_classifier(
    in_features: int, hidden: Sequence[int], num_classes: int, act_layer: ActLayer, dropout: float | None
) -> nn.Sequential:
    """``Flatten -> (Linear -> act [-> Dropout]) per hidden size -> Linear``.

    ``dropout=None`` leaves the dropout layers out; a number (0 included) puts one after
    every hidden activation, so the layer indices do not depend on its value.
    """
    head: list[nn.Module] = [nn.Flatten()]
    n_in = in_features
    for h in hidden:
        head += [nn.Linear(n_in, h), act_layer()]
        if dropout is not None:
            head.append(nn.Dropout(dropout))
        n_in = h
    head.append(nn.Linear(n_in, num_classes))
    return nn.Sequential(*head)
