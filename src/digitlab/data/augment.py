"""Random affine augmentation done on a whole batch on its device (no per-sample transforms)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AffineAugment:
    """Random rotation, scale, shift and shear, one draw per image.

    rotate: max degrees either way; scale: max relative zoom either way (0.1 = 0.9..1.1);
    shift: max pixels either way; shear: max degrees either way.
    """

    rotate: float = 0.0
    scale: float = 0.0
    shift: float = 0.0
    shear: float = 0.0

    @property
    def active(self) -> bool:
        return any((self.rotate, self.scale, self.shift, self.shear))

    def matrices(self, n: int, size: int, generator: torch.Generator, device) -> torch.Tensor:
        """(n, 2, 3) affine matrices in the normalised coordinates of `affine_grid`."""

        def uniform(limit: float) -> torch.Tensor:
            return (torch.rand(n, generator=generator, device=device) * 2 - 1) * limit

        angle = uniform(math.radians(self.rotate))
        shear = uniform(math.radians(self.shear))
        zoom = 1 + uniform(self.scale)
        shift = torch.stack([uniform(self.shift), uniform(self.shift)], 1) * (2 / size)
        cos, sin, tan = angle.cos(), angle.sin(), shear.tan()
        # output -> input coordinates: rotate, then shear along x, then divide by the zoom
        a = torch.stack([cos, -sin + tan * cos], 1) / zoom[:, None]
        b = torch.stack([sin, cos + tan * sin], 1) / zoom[:, None]
        return torch.stack(
            [
                torch.cat([a[:, :1], a[:, 1:], shift[:, :1]], 1),
                torch.cat([b[:, :1], b[:, 1:], shift[:, 1:]], 1),
            ],
            1,
        )

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Transform float images (N, 1, H, W) whose background is 0; returns a new tensor."""
        if not self.active or len(images) == 0:
            return images
        theta = self.matrices(len(images), images.shape[-1], generator, images.device)
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
