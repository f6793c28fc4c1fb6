"""CIFARNet (Wu et al. 2019), the paper's light CIFAR-10 network, made for conversion.

``128C3-256C3-AP2-512C3-AP2-1024C3-512C3-1024FC-512FC-classes``: 3x3 convs with padding 1,
2x2 average pooling, no batch norm (optional here), every activation a module. The paper's
"voting" output layer is a plain linear layer here. ``width`` scales every channel count and
hidden size. It is a :class:`~lightning_snn.models.vgg.VGG` with CIFARNet's layers and no
dropout unless asked for, so the two are built by the same code.
"""

from __future__ import annotations

from lightning_snn.activations import ActLayer
from lightning_snn.models.registry import register_model
from lightning_snn.models.vgg import VGG

# "A" = 2x2 average pooling; an int = a 3x3 conv with that many output channels.
CIFARNET_FEATURES: list = [128, 256, "A", 512, "A", 1024, 512]
CIFARNET_HIDDEN: tuple[int, ...] = (1024, 512)


class CIFARNet(VGG):
    """CIFARNet for conversion: the VGG builder with :data:`CIFARNET_FEATURES` and
    :data:`CIFARNET_HIDDEN`.

    Args: ``num_classes``, ``width``, ``input_size``, ``batch_norm`` and ``act_layer`` as
    :class:`~lightning_snn.models.vgg.VGG`; ``conv_dropout`` / ``fc_dropout``: dropout between
    two convs / after the activation of each hidden fully connected layer, 0 = none (no dropout
    layer at all: the paper has none, and the layer indices name the thresholds).
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: float = 1.0,
        input_size: int = 32,
        conv_dropout: float = 0.0,
        fc_dropout: float = 0.0,
        batch_norm: bool = False,
        act_layer: ActLayer | None = None,
    ) -> None:
        super().__init__(
            CIFARNET_FEATURES,
            num_classes=num_classes,
            width=width,
            input_size=input_size,
            hidden=CIFARNET_HIDDEN,
            conv_dropout=conv_dropout,
            fc_dropout=fc_dropout if fc_dropout > 0 else None,
            batch_norm=batch_norm,
            act_layer=act_layer,
        )


@register_model("cifarnet")
def cifarnet(num_classes: int = 10, width: float = 1.0, **kwargs) -> CIFARNet:
    """CIFARNet (Wu et al. 2019) for conversion; keyword arguments as :class:`CIFARNet`."""
    return CIFARNet(num_classes=num_classes, width=width, **kwargs)
