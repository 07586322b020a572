"""ResNet-18 backbone, spatial pyramid pooling and the two-layer classifier head.

The module names follow torchvision's resnet18 exactly, so ImageNet weights saved by
torchvision load by name (load_torchvision_resnet18) without importing torchvision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mgcli import MgcError


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual shortcut (1x1 conv + BN when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + shortcut)


class ResNet18(nn.Module):
    """ResNet-18 without its classifier (He et al., "Deep residual learning for image recognition", CVPR 2016).

    [B, 3, H, W] -> feature map [B, 8 * width, H / 32, W / 32]. width=64 is the published network
    and the only width that torchvision's ImageNet weights fit.
    """

    def __init__(self, width: int = 64):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._layer(width, width, stride=1)
        self.layer2 = self._layer(width, 2 * width, stride=2)
        self.layer3 = self._layer(2 * width, 4 * width, stride=2)
        self.layer4 = self._layer(4 * width, 8 * width, stride=2)
        self.out_channels = 8 * width

        # The usual ResNet initialisation (He normal for convolutions, BN as identity).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @staticmethod
    def _layer(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(in_channels, out_channels, stride), BasicBlock(out_channels, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def load_torchvision_resnet18(backbone: ResNet18, state: dict[str, Tensor], path: str) -> int:
    """Copy a torchvision resnet18 state dict, read from the file `path`, onto `backbone` by name;
    returns how many tensors were loaded.

    `fc.*` (the ImageNet classifier) is skipped. BatchNorm `num_batches_tracked` counters may be
    absent (older torchvision files lack them). Raises MgcError naming the file when the tensors
    do not fit the backbone.
    """
    weights = {name: tensor for name, tensor in state.items() if not name.startswith("fc.")}
    ours = backbone.state_dict()
    missing = [n for n in ours if n not in weights and not n.endswith("num_batches_tracked")]
    unexpected = [n for n in weights if n not in ours]
    if missing or unexpected:
        raise MgcError(
            f"backbone weights {path} are not a torchvision resnet18 state dict "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, tensor in weights.items():
        if tensor.shape != ours[name].shape:
            raise MgcError(
                f"backbone weights {path} do not fit: {name} is {tuple(tensor.shape)} in the file but "
                f"{tuple(ours[name].shape)} in the model (torchvision resnet18 needs backbone_width=64)"
            )
    # strict=False only lets missing num_batches_tracked through; everything else was checked above.
    backbone.load_state_dict(weights, strict=False)
    return len(weights)


class SpatialPyramidPool(nn.Module):
    """Average pooling over n x n grids for each level n, flattened and concatenated.

    [B, C, H, W] -> [B, C * sum(n * n for n in levels)]; levels=(1,) is global average pooling.
    """

    def __init__(self, levels: tuple[int, ...] = (1, 2)):
        super().__init__()
        self.levels = tuple(levels)

    def out_features(self, channels: int) -> int:
        return channels * sum(n * n for n in self.levels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([F.adaptive_avg_pool2d(x, n).flatten(1) for n in self.levels], dim=1)


class ClassifierHead(nn.Module):
    """Two fully connected layers: Linear -> ReLU -> Dropout -> Linear (logits)."""

    def __init__(self, in_features: int, hidden: int, n_classes: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(x))))
