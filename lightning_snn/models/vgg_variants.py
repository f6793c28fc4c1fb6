"""Named VGG-16 variants on top of :class:`lightning_snn.models.vgg.VGG`.

* ``vgg16_1x1``: the authors' code, a 1x1 kernel for the last conv of stages 3-5
  (same as ``vgg16`` with ``one_by_one_last=True``).
* ``vgg16_imagenet``: the standard 224x224 VGG-16 (Simonyan & Zisserman 2014) for
  ImageNet, with average instead of max pooling and no batch norm: 13 3x3 convs, five 2x2
  poolings down to ``7x7x512`` (the CIFAR VGG-16 has four), fully connected
  ``4096-4096-classes`` with dropout 0.5.
"""

from __future__ import annotations

from lightning_snn.models.registry import register_model
from lightning_snn.models.vgg import VGG, VGG_CONFIGS

#: The standard VGG-16: a 2x2 pool after each of its five blocks (the CIFAR VGG-16 has none after the fifth).
VGG16_IMAGENET_CONFIG = [*VGG_CONFIGS[16], "A"]


@register_model("vgg16_1x1")
def vgg16_1x1(num_classes: int = 10, width: float = 1.0, **kwargs) -> VGG:
    """VGG-16 with 1x1 last convs in stages 3-5 (the authors' code); keyword arguments as :class:`VGG`."""
    if "one_by_one_last" in kwargs:
        raise TypeError("vgg16_1x1 always has one_by_one_last=True; use arch vgg16 to choose.")
    return VGG(VGG_CONFIGS[16], num_classes=num_classes, width=width, one_by_one_last=True, **kwargs)


@register_model("vgg16_imagenet")
def vgg16_imagenet(
    num_classes: int = 1000,
    width: float = 1.0,
    input_size: int = 224,
    conv_dropout: float = 0.0,
    fc_dropout: float = 0.5,
    **kwargs,
) -> VGG:
    """Standard VGG-16 for 224x224 ImageNet, average pooling, no batch norm; keyword arguments as :class:`VGG`."""
    return VGG(
        VGG16_IMAGENET_CONFIG,
        num_classes=num_classes,
        width=width,
        input_size=input_size,
        conv_dropout=conv_dropout,
        fc_dropout=fc_dropout,
        **kwargs,
    )
