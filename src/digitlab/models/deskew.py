"""Moment-based deskewing: shear each image so that its ink's principal axis is upright.

The classic normalisation of handwriting (LeCun et al. 1998, Table 1: it halves the error
of many classifiers): the shear that removes the correlation between the ink's x and y,
estimated from the image's second-order moments, about the ink's centre row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_SHEAR = 1.0  # |dx/dy| beyond this is no handwriting slant (a blank or a stroke-like image)


def pixel_centres(size: int, device: torch.device) -> torch.Tensor:
    """The pixels' centres in grid_sample's normalised coordinates (align_corners=False)."""
    return (torch.arange(size, device=device, dtype=torch.float32) * 2 + 1) / size - 1


def deskew(images: torch.Tensor) -> torch.Tensor:
    """Images (N, 1, H, W), ink brighter than the background, each sheared upright."""
    n, _, height, width = images.shape
    pixels = images.float()
    background = pixels.amin(dim=(2, 3), keepdim=True)
    ink = pixels - background
    mass = ink.sum(dim=(2, 3)).clamp_min(1e-6).view(n)
    xs = pixel_centres(width, images.device).view(1, 1, 1, width)
    ys = pixel_centres(height, images.device).view(1, 1, height, 1)
    centre_x = (ink * xs).sum(dim=(1, 2, 3)) / mass
    centre_y = (ink * ys).sum(dim=(1, 2, 3)) / mass
    dx = xs - centre_x.view(n, 1, 1, 1)
    dy = ys - centre_y.view(n, 1, 1, 1)
    covariance_xy = (ink * dx * dy).sum(dim=(1, 2, 3)) / mass
    variance_y = (ink * dy * dy).sum(dim=(1, 2, 3)) / mass
    shear = (covariance_xy / variance_y.clamp_min(1e-6)).clamp(-MAX_SHEAR, MAX_SHEAR)
    # output (x, y) samples the input at (x + shear * (y - centre_y), y)
    ones, zeros = torch.ones_like(shear), torch.zeros_like(shear)
    theta = torch.stack(
        [torch.stack([ones, shear, -shear * centre_y], 1), torch.stack([zeros, ones, zeros], 1)], 1
    )
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    upright = F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (upright + background).to(images.dtype)


class Deskew(nn.Module):
    """`deskew` as a layer, so that a network deskews its own input wherever it runs."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(images.device.type, enabled=False):  # moments need float32
            return deskew(images)
