"""Random augmentation of a whole batch on its device (no per-image transforms, no PIL).

Geometry (rotation, zoom, aspect, shear, shift, elastic distortion) is one `grid_sample`;
then the stroke (thicker or thinner), the resolution (down- and up-sampled), blur, ink
profile (gamma), noise, and for pictures that have no handedness (clothes, not digits)
mirroring and random erasing. Each kind is off at 0, and an off kind draws no random numbers,
so turning a new kind on never changes the draws of the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from digitlab.config import TrainConfig


@dataclass(frozen=True)
class BatchAugment:
    """One random draw per image for each active kind; limits are 'either way' unless said."""

    rotate: float = 0.0  # max degrees
    scale: float = 0.0  # max relative zoom (0.1 = 0.9..1.1)
    shift: float = 0.0  # max pixels
    shear: float = 0.0  # max degrees
    aspect: float = 0.0  # max relative change of width against height (0.2 = 0.8..1.2)
    elastic: float = 0.0  # displacement of a smooth random field, in pixels
    stroke: float = 0.0  # share of images drawn with a thinner or a thicker pen
    lowres: float = 0.0  # share of images seen at 8-14 pixels and scaled back up
    blur: float = 0.0  # max Gaussian blur sigma, in pixels
    gamma: float = 0.0  # max |log gamma| of the ink profile (0.5 = gamma 0.6..1.65)
    noise: float = 0.0  # max standard deviation of additive noise (pixels in [0, 1])
    flip: float = 0.0  # share of images mirrored left to right
    erase: float = 0.0  # share of images with a random rectangle (2-33 % of the area) replaced by noise

    @classmethod
    def from_config(cls, config: TrainConfig) -> BatchAugment:
        return cls(**{f.name: getattr(config, f"aug_{f.name}") for f in fields(cls)})

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Transform pixels (N, 1, H, W) in [0, 1] whose background is 0; returns a new tensor."""
        if not self.active or len(images) == 0:
            return images
        draw = Draws(len(images), generator, images.device)
        images = self.geometry(images, draw)
        if self.stroke:
            images = change_stroke(images, draw, self.stroke)
        if self.lowres:
            images = low_resolution(images, draw, self.lowres)
        if self.blur:
            images = gaussian_blur(images, draw.uniform(self.blur).abs())
        if self.gamma:
            images = images.clamp(0, 1) ** draw.uniform(self.gamma).exp().view(-1, 1, 1, 1)
        if self.noise:
            sigma = draw.uniform(self.noise).abs().view(-1, 1, 1, 1)
            images = images + sigma * torch.randn(images.shape, generator=generator, device=images.device)
        images = images.clamp(0, 1) if self.stroke or self.lowres or self.noise or self.gamma else images
        if self.flip:
            images = torch.where((draw.rand() < self.flip).view(-1, 1, 1, 1), images.flip(-1), images)
        if self.erase:
            images = random_erasing(images, draw, self.erase)
        return images

    def geometry(self, images: torch.Tensor, draw: Draws) -> torch.Tensor:
        if not any((self.rotate, self.scale, self.shift, self.shear, self.aspect, self.elastic)):
            return images
        size = images.shape[-1]
        theta = self.matrices(draw, size)
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        if self.elastic:
            grid = grid + elastic_field(draw, size, self.elastic).to(images.dtype)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def matrices(self, draw: Draws, size: int) -> torch.Tensor:
        """(n, 2, 3) affine matrices in the normalised coordinates of `affine_grid`."""
        angle = draw.uniform(math.radians(self.rotate))
        shear = draw.uniform(math.radians(self.shear))
        zoom = 1 + draw.uniform(self.scale)
        shift = torch.stack([draw.uniform(self.shift), draw.uniform(self.shift)], 1) * (2 / size)
        stretch = 1 + draw.uniform(self.aspect) if self.aspect else torch.ones_like(zoom)
        cos, sin, tan = angle.cos(), angle.sin(), shear.tan()
        # output -> input coordinates: rotate, then shear along x, then divide by the zoom
        a = torch.stack([cos, -sin + tan * cos], 1) / (zoom * stretch)[:, None]
        b = torch.stack([sin, cos + tan * sin], 1) / zoom[:, None]
        return torch.stack(
            [
                torch.cat([a[:, :1], a[:, 1:], shift[:, :1]], 1),
                torch.cat([b[:, :1], b[:, 1:], shift[:, 1:]], 1),
            ],
            1,
        )


class Draws:
    """Per-image random numbers from one generator, on the images' device."""

    def __init__(self, n: int, generator: torch.Generator, device):
        self.n, self.generator, self.device = n, generator, device

    def uniform(self, limit: float) -> torch.Tensor:
        """(n,) uniform in [-limit, limit]."""
        return (torch.rand(self.n, generator=self.generator, device=self.device) * 2 - 1) * limit

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(self.n, *shape, generator=self.generator, device=self.device)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur image i with its own sigma[i] (pixels; 0 leaves it as it is), separably."""
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernels = torch.exp(-(offsets**2) / (2 * sigma.clamp_min(1e-3).to(images.dtype)[:, None] ** 2))
    kernels = kernels / kernels.sum(1, keepdim=True)  # (n, k); sigma ~0 gives [.., 0, 1, 0, ..]
    n, channels, height, width = images.shape
    flat = images.reshape(1, n * channels, height, width)
    weight = kernels.repeat_interleave(channels, 0)
    flat = F.conv2d(flat, weight[:, None, None, :], padding=(0, radius), groups=n * channels)
    flat = F.conv2d(flat, weight[:, None, :, None], padding=(radius, 0), groups=n * channels)
    return flat.reshape(n, channels, height, width)


def elastic_field(draw: Draws, size: int, pixels: float) -> torch.Tensor:
    """(n, size, size, 2) smooth random displacements of up to about `pixels`, normalised."""
    noise = draw.rand(2, size, size) * 2 - 1
    smooth = gaussian_blur(noise, torch.full((draw.n,), 4.0, device=noise.device))
    smooth = smooth / smooth.abs().amax((1, 2, 3), keepdim=True).clamp_min(1e-6)
    return (smooth * pixels * 2 / size).permute(0, 2, 3, 1)


def change_stroke(images: torch.Tensor, draw: Draws, share: float) -> torch.Tensor:
    """A thinner pen for about share/2 of the images, a thicker one for another share/2.

    Done at twice the resolution, so a stroke changes by about one pixel, not two."""
    choice = draw.rand()
    fine = F.interpolate(images, scale_factor=2, mode="bilinear", align_corners=False)
    thicker = F.max_pool2d(fine, 3, 1, 1)
    thinner = -F.max_pool2d(-fine, 3, 1, 1)
    thinner = torch.maximum(thinner, fine * 0.35)  # a thin stroke fades, it does not vanish
    pick = lambda mask: mask.view(-1, 1, 1, 1)  # noqa: E731
    fine = torch.where(pick(choice < share / 2), thinner, torch.where(pick(choice < share), thicker, fine))
    return F.avg_pool2d(fine, 2)


def low_resolution(images: torch.Tensor, draw: Draws, share: float) -> torch.Tensor:
    """About `share` of the images shrunk to 8-14 pixels and scaled back up (a small scan)."""
    chosen = draw.rand() < share
    sizes = (draw.rand() * 7).long() + 8
    result = images.clone()
    size = images.shape[-1]
    for low in sizes[chosen].unique().tolist():
        index = chosen & (sizes == low)
        small = F.interpolate(images[index], size=(low, low), mode="area")
        result[index] = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return result


def random_erasing(images: torch.Tensor, draw: Draws, share: float) -> torch.Tensor:
    """About `share` of the images get one rectangle of 2-33 % of their area, with an aspect
    ratio between 0.3 and 3.3, filled with uniform noise (Zhong et al., 2017)."""
    n, _, height, width = images.shape
    area = (0.02 + draw.rand() * 0.31) * height * width
    aspect = torch.exp(math.log(0.3) + draw.rand() * (math.log(3.3) - math.log(0.3)))
    tall = (area * aspect).sqrt().round().clamp(1, height)
    wide = (area / aspect).sqrt().round().clamp(1, width)
    top = (draw.rand() * (height - tall + 1)).floor()
    left = (draw.rand() * (width - wide + 1)).floor()
    rows = torch.arange(height, device=images.device).view(1, -1, 1)
    columns = torch.arange(width, device=images.device).view(1, 1, -1)
    inside = (
        (rows >= top.view(-1, 1, 1))
        & (rows < (top + tall).view(-1, 1, 1))
        & (columns >= left.view(-1, 1, 1))
        & (columns < (left + wide).view(-1, 1, 1))
    )
    chosen = (draw.rand() < share).view(-1, 1, 1) & inside
    noise = draw.rand(1, height, width).to(images.dtype)
    return torch.where(chosen[:, None], noise, images)
