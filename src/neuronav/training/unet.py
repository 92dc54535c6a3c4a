"""The segmentation network: a compact 3D U-Net (nnU-Net's layout, scaled down for CPUs).

Encoder-decoder with skip connections; each stage is two 3×3×3 convolutions with instance
normalisation and leaky ReLU; down-sampling by strided convolution, up-sampling by transposed
convolution. Input: (batch, 4, X, Y, Z) channels T1, T1c, T2, FLAIR on the 2 mm working grid;
output: logits for the four BraTS labels. X, Y, Z must be multiples of 2**(levels-1).
"""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.InstanceNorm3d(c_out, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
        nn.Conv3d(c_out, c_out, 3, padding=1, bias=False),
        nn.InstanceNorm3d(c_out, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
    )


class UNet3D(nn.Module):
    def __init__(self, in_channels: int = 4, n_classes: int = 4, base: int = 16, levels: int = 4) -> None:
        super().__init__()
        widths = [min(base * 2**i, 256) for i in range(levels)]
        self.widths = widths
        self.encoders = nn.ModuleList(
            [_block(in_channels, widths[0])] + [_block(widths[i - 1], widths[i], stride=2) for i in range(1, levels)]
        )
        self.ups = nn.ModuleList(
            [nn.ConvTranspose3d(widths[i], widths[i - 1], 2, stride=2) for i in range(levels - 1, 0, -1)]
        )
        self.decoders = nn.ModuleList([_block(2 * widths[i - 1], widths[i - 1]) for i in range(levels - 1, 0, -1)])
        self.head = nn.Conv3d(widths[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.ups, self.decoders, strict=True):
            x = up(x)
            x = dec(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)  # type: ignore[no-any-return]
