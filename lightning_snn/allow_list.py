"""The converter's allow-list: the operations that run unchanged on spikes, and the activations.

One home for these sets: :mod:`lightning_snn.graph_check` checks a network against them before any
conversion, and :mod:`lightning_snn.fanout` counts the synapses of the same operations, so what
converts and what the diagnostics count cannot drift apart. Everything here is linear and
time-invariant (DESIGN.md section 7), or an activation that becomes an IF neuron.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

# ---- the allow-list -----------------------------------------------------------------------
#: Modules that are linear (affine) and time-invariant: run unchanged on spikes.
LINEAR_MODULES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Linear,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Identity,
    nn.ZeroPad1d,
    nn.ZeroPad2d,
    nn.ZeroPad3d,
)
BATCH_NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: Clipped-ReLU modules converted as ``clamp(x, 0, max)``.
CLIPPED_RELU_MODULES: tuple[type[nn.Module], ...] = (nn.ReLU6, nn.Hardtanh)
MAX_POOLS: tuple[type[nn.Module], ...] = (nn.MaxPool2d,)

RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, F.relu_}
CLAMP_FUNCTIONS = {torch.clamp, torch.clip, torch.clamp_min}
RELU_METHODS = {"relu", "relu_"}
CLAMP_METHODS = {"clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_"}

# Functions / methods that are linear in their tensor input and keep the batch dimension.
LINEAR_FUNCTIONS = {
    torch.flatten,
    torch.reshape,
    torch.cat,
    torch.concat,
    torch.squeeze,
    torch.unsqueeze,
    torch.transpose,
    torch.permute,
    torch.mean,
    torch.sum,
    torch.chunk,
    torch.split,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.dropout,
    F.dropout1d,
    F.dropout2d,
    F.dropout3d,
    F.pad,
    F.conv1d,
    F.conv2d,
    F.conv3d,
    F.linear,
    operator.neg,
    operator.pos,
    torch.neg,
}
LINEAR_METHODS = {
    "view",
    "reshape",
    "flatten",
    "contiguous",
    "permute",
    "transpose",
    "unsqueeze",
    "squeeze",
    "mean",
    "sum",
    "chunk",
    "split",
    "neg",
    "float",
    "to",
    "type_as",
    "clone",
}
ADDITIVE = {operator.add, operator.sub, operator.iadd, operator.isub, torch.add, torch.sub}
ADDITIVE_METHODS = {"add", "sub", "add_", "sub_"}
SCALING = {operator.mul, operator.imul, operator.truediv, operator.itruediv, torch.mul, torch.div}
SCALING_METHODS = {"mul", "mul_", "div", "div_"}
META_METHODS = {"size", "dim", "numel"}
# Linear ops whose dim argument must not be 0, the (time-folded) batch dimension.
DIM_FUNCTIONS = {
    torch.cat,
    torch.concat,
    torch.squeeze,
    torch.unsqueeze,
    torch.mean,
    torch.sum,
    torch.chunk,
    torch.split,
    torch.transpose,
    torch.permute,
}
DIM_METHODS = {"unsqueeze", "squeeze", "mean", "sum", "chunk", "split", "transpose", "permute"}

HINT = (
    "The converter accepts ReLU-like activations (nn.ReLU, ThresholdReLU, F.relu, clamp(min=0)) and "
    "operations that are linear and time-invariant (conv, linear, average pooling, batch norm in eval, "
    "flatten/view, cat, add of branches, scaling by a constant, dropout); max pooling directly after an "
    "activation. Replace it by one of these, or keep it out of the network you convert."
)
