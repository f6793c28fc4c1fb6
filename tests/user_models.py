"""A user's own networks, importable as ``tests.user_models.SmallResNet`` (the CLI's model.arch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SmallResNet(nn.Module):
    """BN + residual CNN that reuses one nn.ReLU at three sites and also calls F.relu / torch.relu."""

    def __init__(self, num_classes: int = 10, channels: int = 8) -> None:
        super().__init__()
        c = channels
        self.conv1 = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(2 * c * 4, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(h)))
        out = self.relu(out + h)
        out = F.relu(self.conv3(out))
        out = torch.flatten(self.pool(out), 1)
        return self.fc2(torch.relu(self.fc1(out)))


class UpsamplingNet(nn.Module):
    """A user's classifier with nn.Upsample, which the converter does not allow (refused before training)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.fc = nn.Linear(4 * 32 * 32, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.up(torch.relu(self.conv(x))), 1))
