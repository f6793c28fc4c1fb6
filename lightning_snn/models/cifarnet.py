"""CIFARNet (Wu et al. 2019), the paper's light CIFAR-10 network, made for conversion.

``128C3-256C3-AP2-512C3-AP2-1024C3-512C3-1024FC-512FC-classes``: 3x3 convs with padding 1,
2x2 average pooling, no batch norm, every activation a module. The paper's "voting" output
layer is a plain linear layer here. ``width`` scales every channel count and hidden size.
"""

from __future__ import annotations

from torch import nn

from lightning_snn.activations import make_activation
from lightning_snn.models.registry import check_model_args, register_model
from lightning_snn.models.vgg import init_conversion_weights, scaled

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
        activation: ``"threshold_relu"`` or ``"relu"`` (see :func:`make_activation`).
        y_th: threshold of the threshold ReLU.
        activation_shift: shift of the source ANN's ReLU (0 = none).
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
    ) -> None:
        super().__init__()
        check_model_args(width, num_classes)

        def act() -> nn.Module:
            return make_activation(activation, y_th=y_th, shift=activation_shift)

        layers: list[nn.Module] = []
        in_ch, size = 3, input_size
        for i, item in enumerate(CIFARNET_FEATURES):
            if item == "A":
                layers.append(nn.AvgPool2d(2))
                size //= 2
                continue
            out_ch = scaled(item, width)
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), act()]
            followed_by_conv = i + 1 < len(CIFARNET_FEATURES) and CIFARNET_FEATURES[i + 1] != "A"
            if conv_dropout > 0 and followed_by_conv:  # between convs, as in the VGG
                layers.append(nn.Dropout(conv_dropout))
            in_ch = out_ch
        if size < 1:
            raise ValueError(f"input_size {input_size} is too small for two 2x2 poolings.")
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        n_in = in_ch * size * size
        for hidden in CIFARNET_HIDDEN:
            h = scaled(hidden, width)
            head += [nn.Linear(n_in, h), act()]
            if fc_dropout > 0:
                head.append(nn.Dropout(fc_dropout))
            n_in = h
        head.append(nn.Linear(n_in, num_classes))
        self.classifier = nn.Sequential(*head)
        init_conversion_weights(self)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("cifarnet")
def cifarnet(num_classes: int = 10, width: float = 1.0, **kwargs) -> CIFARNet:
    """CIFARNet (Wu et al. 2019) for conversion; keyword arguments as :class:`CIFARNet`."""
    return CIFARNet(num_classes=num_classes, width=width, **kwargs)
