"""VGG networks made for conversion: no batch norm, average pooling, activations as modules.

The paper's CIFAR VGG-16 (Rathi et al. 2019 / Sengupta et al. 2018 variant): 13 3x3 convs
``64,64,AP,128,128,AP,256x3,AP,512x3,AP,512x3,AP``, dropout 0.2 between convs and 0.5
between the fully connected layers ``4096-4096-classes``. ``width`` scales every channel
count and hidden size, for CPU-scale runs and tests.
"""

from __future__ import annotations

import math

from torch import nn

from lightning_snn.activations import make_activation
from lightning_snn.models.registry import check_model_args, register_model

# "A" = 2x2 average pooling; an int = a 3x3 conv with that many output channels.
VGG_CONFIGS: dict[int, list] = {
    11: [64, "A", 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"],
    13: [64, 64, "A", 128, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"],
    16: [64, 64, "A", 128, 128, "A", 256, 256, 256, "A", 512, 512, 512, "A", 512, 512, 512, "A"],
}


def scaled(channels: int, width: float) -> int:
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


class VGG(nn.Module):
    """A VGG feature extractor + classifier, convertible layer by layer.

    Args:
        config: conv channel counts and ``"A"`` (average pooling), see :data:`VGG_CONFIGS`.
        num_classes: output classes.
        width: multiplier on every channel count and hidden size.
        input_size: input height = width in pixels (32 for CIFAR, 224 for ImageNet).
        hidden: hidden size of the two fully connected layers (before ``width``).
        conv_dropout / fc_dropout: dropout between convs / between fully connected layers.
        activation: ``"threshold_relu"`` or ``"relu"`` (see :func:`make_activation`).
        y_th: threshold of the threshold ReLU.
        activation_shift: shift of the source ANN's ReLU (the paper's "S" variant), 0 = none.
        one_by_one_last: kernel size 1 for the last conv of each 3-conv stage (the authors'
            code), instead of 3 (the paper's VGG-16).
    """

    def __init__(
        self,
        config: list,
        num_classes: int = 10,
        width: float = 1.0,
        input_size: int = 32,
        hidden: int = 4096,
        conv_dropout: float = 0.2,
        fc_dropout: float = 0.5,
        activation: str = "threshold_relu",
        y_th: float = 1.0,
        activation_shift: float = 0.0,
        one_by_one_last: bool = False,
    ) -> None:
        super().__init__()
        check_model_args(width, num_classes)

        def act() -> nn.Module:
            return make_activation(activation, y_th=y_th, shift=activation_shift)

        layers: list[nn.Module] = []
        in_ch, size = 3, input_size
        stage_convs: list[int] = []
        for i, item in enumerate(config):
            if item == "A":
                layers.append(nn.AvgPool2d(2))
                size //= 2
                stage_convs = []
                continue
            stage_convs.append(i)
            out_ch = scaled(item, width)
            last_of_three = len(stage_convs) == 3 and i + 1 < len(config) and config[i + 1] == "A"
            k = 1 if (one_by_one_last and last_of_three) else 3
            layers += [nn.Conv2d(in_ch, out_ch, k, padding=k // 2), act()]
            if conv_dropout > 0 and i + 1 < len(config) and config[i + 1] != "A":
                layers.append(nn.Dropout(conv_dropout))
            in_ch = out_ch
        if size < 1:
            raise ValueError(f"input_size {input_size} is too small for {config.count('A')} poolings.")
        self.features = nn.Sequential(*layers)
        h = scaled(hidden, width)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_ch * size * size, h),
            act(),
            nn.Dropout(fc_dropout),
            nn.Linear(h, h),
            act(),
            nn.Dropout(fc_dropout),
            nn.Linear(h, num_classes),
        )
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
