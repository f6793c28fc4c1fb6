"""CIFARNet (Wu et al. 2019), the paper's light CIFAR-10 network, made for conversion.

``128C3-256C3-AP2-512C3-AP2-1024C3-512C3-1024FC-512FC-classes``: 3x3 convs with padding 1,
2x2 average pooling, no batch norm (optional here), every activation a module. The paper's
"voting" output layer is a plain linear layer here. ``width`` scales every channel count and
hidden size. Built by the same :func:`~lightning_snn.models.layers.make_features` as the VGG.
"""

from __future__ import annotations

from torch import nn

from lightning_snn.activations import ActLayer, resolve_act_layer
from lightning_snn.models.layers import init_conversion_weights, make_classifier, make_features, scaled
from lightning_snn.models.registry import check_model_args, register_model

# "A" = 2x2 average pooling; an int = a 3x3 conv with that many output channels.
CIFARNET_FEATURES: list = [128, 256, "A", 512, "A", 1024, 512]
CIFARNET_HIDDEN: tuple[int, ...] = (1024, 512)


class CIFARNet(nn.Module):
    """CIFARNet for conversion.

    Args:
        num_classes: output classes.
        width: multiplier on every channel count and hidden size.
        input_size: input height = width in pixels.
        conv_dropout / fc_dropout: dropout between two convs / after the activation of each
            hidden fully connected layer; 0 = none.
        activation: ``"threshold_relu"`` or ``"relu"`` (see :func:`~lightning_snn.activations.make_activation`).
        y_th: threshold of the threshold ReLU.
        activation_shift: shift of the source ANN's ReLU (0 = none).
        batch_norm: ``conv -> BatchNorm2d -> act`` (convs without bias); off in the paper.
        act_layer: an activation factory to use instead of ``activation`` / ``y_th`` /
            ``activation_shift`` (timm's ``act_layer``).
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: float = 1.0,
        input_size: int = 32,
        conv_dropout: float = 0.0,
        fc_dropout: float = 0.0,
        activation: str = "threshold_relu",
        y_th: float = 1.0,
        activation_shift: float = 0.0,
        batch_norm: bool = False,
        act_layer: ActLayer | None = None,
    ) -> None:
        super().__init__()
        check_model_args(width, num_classes)
        act_layer = resolve_act_layer(act_layer, activation, y_th, activation_shift)
        self.features, channels, size = make_features(
            CIFARNET_FEATURES, act_layer, width, input_size, conv_dropout=conv_dropout, batch_norm=batch_norm
        )
        hidden = [scaled(h, width) for h in CIFARNET_HIDDEN]
        # no dropout layers unless asked for (the paper has none): dropout=None
        self.classifier = make_classifier(
            channels * size * size, hidden, num_classes, act_layer, dropout=fc_dropout if fc_dropout > 0 else None
        )
        init_conversion_weights(self)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("cifarnet")
def cifarnet(num_classes: int = 10, width: float = 1.0, **kwargs) -> CIFARNet:
    """CIFARNet (Wu et al. 2019) for conversion; keyword arguments as :class:`CIFARNet`."""
    return CIFARNet(num_classes=num_classes, width=width, **kwargs)
