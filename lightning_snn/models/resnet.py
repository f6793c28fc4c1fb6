"""ResNet-20 of Sengupta et al. (2018) / Rathi et al. (2019), made for conversion.

"ResNet-18 adding two convolutional layers for pre-processing in front, and an activation
function after the basic blocks" (paper A.1) -- not He's 16-32-64 CIFAR ResNet-20:

* stem: three 3x3 convs ``3 -> 64 -> 64 -> 64``, an activation after each, then ``AvgPool2d(2)``;
* four stages of two basic blocks, ``64/128/256/512`` channels, strides ``1/2/2/2``;
* basic block: ``conv3x3(stride) - act - [dropout] - conv3x3``, plus the shortcut (identity,
  or a 1x1 conv with that stride where the shape changes), then the activation after the add;
* no batch norm (``batch_norm=True`` adds it after every conv); classifier
  ``Flatten -> Linear(512 * 2 * 2 -> classes)`` for 32x32 inputs.

Why there is no conversion code here: the converter
(:func:`lightning_snn.conversion.convert`) only swaps activation *modules* for IF neurons,
and every other op of this graph -- conv, average pooling, dropout, flatten, linear and the
residual ``+`` -- is stateless and runs unchanged on time-folded tensors. So the block's
``act_out`` (the activation after the add) becomes one IF neuron that integrates
branch + shortcut, and it gets the same threshold and shift as every other neuron, with no
model-specific code. For that to hold, the graph must be plain modules and ``+``: a
functional ``F.relu`` would stay analog in the SNN (:func:`check_convertible` traces the
model with torch.fx and refuses it), and no in-place op may touch a tensor an activation or
neuron returned (the identity shortcut shares it with the branch, and the calibration and
rate hooks read it), hence ``branch + shortcut``, never ``+=``.
"""

from __future__ import annotations

from torch import nn

from lightning_snn.activations import ActLayer, resolve_act_layer
from lightning_snn.models.layers import conv_act, conv_bn, init_conversion_weights, scaled
from lightning_snn.models.registry import check_model_args, register_model

SHORTCUTS = ("identity_when_possible", "conv")


class BasicBlock(nn.Module):
    """``act_out(conv(act(conv(x))) + shortcut(x))``, batch norm optional.

    Args:
        in_ch / out_ch: channels in and out.
        stride: stride of the first conv (and of the shortcut's 1x1 conv).
        act_layer: builds one activation module.
        dropout: dropout between the two convs (0 = none).
        shortcut: ``"identity_when_possible"`` (identity when the shape is unchanged, else
            a 1x1 conv with the stride) or ``"conv"`` (always a 1x1 conv).
        batch_norm: a ``BatchNorm2d`` after each conv, the shortcut's 1x1 conv included
            (which then becomes ``Sequential(conv, bn)``).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int,
        act_layer: ActLayer,
        dropout: float,
        shortcut: str,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        branch = conv_act(in_ch, out_ch, act_layer, stride=stride, batch_norm=batch_norm)
        if dropout > 0:
            branch.append(nn.Dropout(dropout))
        branch += conv_bn(out_ch, out_ch, batch_norm=batch_norm)
        self.residual = nn.Sequential(*branch)
        if shortcut == "conv" or stride != 1 or in_ch != out_ch:
            projection = conv_bn(in_ch, out_ch, kernel_size=1, stride=stride, batch_norm=batch_norm)
            # a bare conv without BN, so the checkpoints' "shortcut.weight" keys stay valid
            self.shortcut: nn.Module = nn.Sequential(*projection) if batch_norm else projection[0]
        else:
            self.shortcut = nn.Identity()
        self.act_out = act_layer()

    def forward(self, x):
        return self.act_out(self.residual(x) + self.shortcut(x))


class ResNet(nn.Module):
    """Sengupta-style residual network for conversion.

    Args:
        num_classes: output classes.
        width: multiplier on every channel count.
        input_size: input height = width in pixels (32 for CIFAR: a 2x2 map before the classifier).
        stem_channels: channels of the three stem convs (before ``width``).
        stage_channels / stage_strides / blocks_per_stage: the residual stages.
        dropout: dropout after the stem's first two activations and inside every block (0 = none).
        shortcut: see :class:`BasicBlock`.
        batch_norm: a ``BatchNorm2d`` after every conv (see :class:`BasicBlock`); off in the paper.
        act_layer: the activation factory (timm's ``act_layer``), as :class:`~lightning_snn.models.vgg.VGG`.
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: float = 1.0,
        input_size: int = 32,
        stem_channels: int = 64,
        stage_channels: tuple[int, ...] = (64, 128, 256, 512),
        stage_strides: tuple[int, ...] = (1, 2, 2, 2),
        blocks_per_stage: int = 2,
        dropout: float = 0.2,
        shortcut: str = "identity_when_possible",
        batch_norm: bool = False,
        act_layer: ActLayer | None = None,
    ) -> None:
        super().__init__()
        check_model_args(width, num_classes)
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; choose one of {list(SHORTCUTS)}.")
        if len(stage_channels) != len(stage_strides):
            raise ValueError("stage_channels and stage_strides must have the same length.")
        act_layer = resolve_act_layer(act_layer)

        c = scaled(stem_channels, width)
        stem: list[nn.Module] = []
        in_ch = 3
        for i in range(3):
            stem += conv_act(in_ch, c, act_layer, batch_norm=batch_norm)
            if dropout > 0 and i < 2:
                stem.append(nn.Dropout(dropout))
            in_ch = c
        stem.append(nn.AvgPool2d(2))
        self.stem = nn.Sequential(*stem)
        size = input_size // 2
        stages = []
        for channels, stride in zip(stage_channels, stage_strides, strict=True):
            out_ch = scaled(channels, width)
            blocks = []
            for b in range(blocks_per_stage):
                s = stride if b == 0 else 1
                blocks.append(BasicBlock(in_ch, out_ch, s, act_layer, dropout, shortcut, batch_norm))
                in_ch = out_ch
                size = (size - 1) // s + 1  # a 3x3 conv with padding 1 and stride s
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        if size < 1:
            raise ValueError(f"input_size {input_size} is too small for this network.")
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * size * size, num_classes))
        init_conversion_weights(self)

    def forward(self, x):
        return self.classifier(self.layers(self.stem(x)))


@register_model("resnet20")
def resnet20(num_classes: int = 10, width: float = 1.0, **kwargs) -> ResNet:
    """ResNet-20 (Sengupta et al. 2018) for conversion; keyword arguments as :class:`ResNet`."""
    return ResNet(num_classes=num_classes, width=width, **kwargs)
