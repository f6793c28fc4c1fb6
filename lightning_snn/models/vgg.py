"""VGG networks made for conversion: average pooling, activations as modules, batch norm optional.

The paper's CIFAR VGG-16 (Rathi et al. 2019; the authors' ``models/VGG16.py``): 13 3x3 convs
``64,64,AP,128,128,AP,256x3,AP,512x3,AP,512x3`` with **four** 2x2 average pools and none after
the fifth block, so a 32x32 image leaves the features as ``512 x 2 x 2`` and the fully
connected layers are ``2048-4096-4096-classes``; dropout 0.2 between convs and 0.5 between the
fully connected layers, no batch norm: 39,929,674 parameters for 10 classes (35,211,082 with
the authors' 1x1 last convs, ``vgg16_1x1``). ``width`` scales every channel count and hidden
size, for CPU-scale runs and tests. VGG-11 and VGG-13 keep a pool after every block (five), as
does the ImageNet VGG-16 (:mod:`lightning_snn.models.vgg_variants`).
"""

from __future__ import annotations

from torch import nn

from lightning_snn.activations import ActLayer, resolve_act_layer
from lightning_snn.models.layers import (
    FeatureConfig,
    init_conversion_weights,
    make_classifier,
    make_features,
    scaled,
    with_one_by_one_last,
)
from lightning_snn.models.registry import check_model_args, register_model

__all__ = ["VGG", "VGG_CONFIGS", "init_conversion_weights", "scaled"]

# "A" = 2x2 average pooling; an int = a 3x3 conv with that many output channels. VGG-16 is the paper's
# CIFAR network: no pool after the fifth block (an earlier version had one: a 512 -> 4096 first FC and
# 33.6 M parameters, not the paper's network; docs/RESULTS.md labels the numbers measured on it).
VGG_CONFIGS: dict[int, list] = {
    11: [64, "A", 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"],
    13: [64, 64, "A", 128, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"],
    16: [64, 64, "A", 128, 128, "A", 256, 256, 256, "A", 512, 512, 512, "A", 512, 512, 512],
}


class VGG(nn.Module):
    """A VGG feature extractor + classifier, convertible layer by layer.

    Args:
        config: conv channel counts and ``"A"`` (average pooling), see :data:`VGG_CONFIGS`
            and :data:`~lightning_snn.models.layers.FeatureConfig`.
        num_classes: output classes.
        width: multiplier on every channel count and hidden size.
        input_size: input height = width in pixels (32 for CIFAR, 224 for ImageNet).
        hidden: size of each hidden fully connected layer (before ``width``); an int = two of that size.
        conv_dropout / fc_dropout: dropout between convs / between fully connected layers
            (``fc_dropout=None``: no dropout layer in the classifier).
        one_by_one_last: kernel size 1 for the last conv of each 3-conv stage (the authors'
            code), instead of 3 (the paper's VGG-16).
        batch_norm: ``conv -> BatchNorm2d -> act`` (convs without bias); off in the paper.
        act_layer: the activation factory, one module per call site (timm's ``act_layer``, e.g.
            ``make_activation("relu", y_th=2.0)``, see :func:`~lightning_snn.activations.make_activation`);
            None: the threshold ReLU with clip 1, off until switched on.
    """

    def __init__(
        self,
        config: FeatureConfig,
        num_classes: int = 10,
        width: float = 1.0,
        input_size: int = 32,
        hidden: int | tuple[int, ...] = 4096,
        conv_dropout: float = 0.2,
        fc_dropout: float | None = 0.5,
        one_by_one_last: bool = False,
        batch_norm: bool = False,
        act_layer: ActLayer | None = None,
    ) -> None:
        super().__init__()
        check_model_args(width, num_classes)
        act_layer = resolve_act_layer(act_layer)
        if one_by_one_last:
            config = with_one_by_one_last(config)
        self.features, channels, size = make_features(
            config, act_layer, width, input_size, conv_dropout=conv_dropout, batch_norm=batch_norm
        )
        sizes = [scaled(h, width) for h in ((hidden, hidden) if isinstance(hidden, int) else hidden)]
        self.classifier = make_classifier(channels * size * size, sizes, num_classes, act_layer, dropout=fc_dropout)
        init_conversion_weights(self)

    def forward(self, x):
        return self.classifier(self.features(x))


def _vgg(depth: int):
    def build(num_classes: int = 10, width: float = 1.0, one_by_one_last: bool = False, **kwargs) -> VGG:
        return VGG(VGG_CONFIGS[depth], num_classes=num_classes, width=width, one_by_one_last=one_by_one_last, **kwargs)

    build.__doc__ = f"VGG-{depth} for conversion; keyword arguments as :class:`VGG`."
    return build


for _depth in VGG_CONFIGS:
    register_model(f"vgg{_depth}")(_vgg(_depth))
