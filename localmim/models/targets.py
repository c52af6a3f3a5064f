"""Reconstruction targets of LocalMIM, computed for every scale at once.

Each target module maps normalised images [B, 3, H, W] to a list of target maps, one per cell
size, each [B, C, H/cell, W/cell] (channels first). Targets are not trained and carry no gradient.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS

SOBEL = torch.tensor([[1., 0., -1.], [2., 0., -2.], [1., 0., -1.]])
# Sobel responses below this fraction of the largest possible one (8 max|x|) are rounding noise
# (float32 sums of terms up to 4 max|x|); they are snapped to 0 so that binning is deterministic.
SNAP = 1e-6


def sobel(images):
    """Sobel responses [B, C, 2, H, W] of [B, C, H, W] with reflect padding: channel 0 correlates
    with ``SOBEL`` (horizontal change), channel 1 with its transpose. Computed separably (a
    [1, 2, 1] smoothing then a central difference), which is much faster than a 1-channel conv."""
    B, C, H, W = images.shape
    p = F.pad(images.reshape(B * C, 1, H, W), (1, 1, 1, 1), mode='reflect')[:, 0]
    rows = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]  # vertical smoothing, [BC, H, W + 2]
    cols = p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]  # horizontal smoothing, [BC, H + 2, W]
    g0 = rows[:, :, :-2] - rows[:, :, 2:]
    g1 = cols[:, :-2] - cols[:, 2:]
    return torch.stack([g0, g1], 1).view(B, C, 2, H, W)


def snap_small(grads, images, snap=SNAP):
    """Sobel responses [B, C, 2, H, W] of images [B, C, H, W] with every response whose magnitude
    is at most ``snap`` x 8 max|image channel| set to exactly 0.

    A response that is 0 in exact arithmetic (flat or symmetric neighbourhoods) comes out of
    floating point as +-1e-7 or +-1e-16 with an arbitrary sign, and atan2 turns the sign into a
    jump between bin 0 and bin nbins-1 (or around pi/2 for even nbins); snapped, every
    precision and device puts the pixel in the same bin. Genuine responses of uint8 images are
    multiples of 1/std (> 1e-2), far above the threshold.
    """
    bound = 8 * images.abs().amax(dim=(-2, -1))  # [B, C]: |response| <= sum|SOBEL| * max|x|
    # a NaN/inf pixel must not make every response "small": it propagates to the target instead
    threshold = torch.where(torch.isfinite(bound), snap * bound, torch.zeros_like(bound))
    return grads.masked_fill(grads.abs() <= threshold[:, :, None, None, None], 0.)


@MODELS.register_module()
class HOGTarget(nn.Module):
    """Histograms of oriented gradients, per colour channel, at several cell sizes.

    Per channel: Sobel responses (g0 with [[1,0,-1],[2,0,-2],[1,0,-1]], g1 with its transpose,
    reflect padding; rounding noise snapped to 0, see :func:`snap_small`; optional frozen bias),
    magnitude |g|, angle atan2(g0, g1), hard unsigned binning ``floor(angle / pi * nbins) mod
    nbins``; each pixel adds its magnitude to its bin. Runs in float32, or float64 for float64 input.
    The bin maps are average-pooled over cells and each cell's nbins vector is L2-normalised.
    Output channels are colour-major: [R bins, G bins, B bins] (3 * nbins).

    Gradients and binning run once, accumulating straight into the finest cells' histograms;
    coarser cells average those (average pooling composes exactly for nested cells). With
    ``bias='per_scale'`` (LocalMIM release checkpoints, which hold one random bias per scale)
    binning runs once per scale instead.

    Args:
        nbins: orientation bins (9 for ViT-B, 18 for ViT-L/Swin).
        cell_sizes: cell size in pixels of each output, e.g. (4, 8, 16, 32).
        bias: None, 'shared' (one frozen random bias, as for "hog bias") or 'per_scale'.
    """

    def __init__(self, nbins=9, cell_sizes=(4, 8, 16, 32), bias=None):
        super().__init__()
        if bias not in (None, 'shared', 'per_scale'):
            raise ValueError(f"HOGTarget bias must be None, 'shared' or 'per_scale', got {bias!r}")
        self.nbins, self.cell_sizes = nbins, tuple(cell_sizes)
        if bias is None:
            self.bias = None
        else:
            sets = 1 if bias == 'shared' else len(self.cell_sizes)
            # nn.Conv2d's default bias init for a 1->2 channel 3x3 conv: U(-1/3, 1/3); frozen.
            self.register_buffer('bias', torch.empty(sets, 2).uniform_(-1 / 3, 1 / 3))

    @property
    def channels(self):
        """Target dimension of each scale."""
        return [3 * self.nbins] * len(self.cell_sizes)

    def gradients(self, images):
        """Snapped Sobel responses [B, 3, 2, H, W] of images [B, 3, H, W] (float32 or float64)."""
        images = images if images.dtype == torch.float64 else images.float()
        return snap_small(sobel(images), images)

    def pixel_bins(self, grads, bias=None):
        """Per-pixel magnitude [B, 3, H, W] and orientation bin (int64) of Sobel responses
        [B, 3, 2, H, W], after adding ``bias`` [2] if given."""
        if bias is not None:
            grads = grads + bias.view(1, 1, 2, 1, 1)
        g0, g1 = grads[:, :, 0], grads[:, :, 1]
        magnitude = torch.sqrt(g0 * g0 + g1 * g1)
        bins = torch.floor(torch.atan2(g0, g1) / math.pi * self.nbins).long() % self.nbins
        return magnitude, bins

    def cell_histograms(self, grads, bias, cell):
        """Cell histograms [B, 3, nbins, H/cell, W/cell] (mean over each cell's pixels) from
        Sobel responses [B, 3, 2, H, W]: every pixel adds its magnitude to its bin of its cell."""
        magnitude, bins = self.pixel_bins(grads, bias)
        B, C, H, W = magnitude.shape
        h, w = H // cell, W // cell
        rows = torch.arange(H, device=grads.device) // cell
        cols = torch.arange(W, device=grads.device) // cell
        index = bins * (h * w) + (rows[:, None] * w + cols[None, :])  # [B, C, H, W] into nbins*h*w
        hist = magnitude.new_zeros(B * C, self.nbins * h * w)
        hist.scatter_add_(1, index.view(B * C, -1), magnitude.view(B * C, -1))
        return hist.view(B, C, self.nbins, h, w) / (cell * cell)

    def pooled(self, hist, finest, cells):
        """Average-pool cell histograms [B, 3, nbins, h, w] of ``finest`` px cells to each of ``cells``."""
        B, C, K, h, w = hist.shape
        flat = hist.flatten(1, 2)
        out = []
        for cell in cells:
            if cell % finest:
                raise ValueError(f'HOG cell sizes must be multiples of the finest, got {self.cell_sizes}')
            k = cell // finest
            pooled = F.avg_pool2d(flat, k) if k > 1 else flat
            out.append(pooled.view(B, C, K, h // k, w // k))
        return out

    @torch.no_grad()
    def forward(self, images):
        B, C, H, W = images.shape
        for cell in self.cell_sizes:
            if H % cell or W % cell:
                raise ValueError(f'image size {H}x{W} is not divisible by the HOG cell size {cell}')
        grads = self.gradients(images)
        if self.bias is None or self.bias.shape[0] == 1:
            finest = min(self.cell_sizes)
            bias = None if self.bias is None else self.bias[0]
            maps = self.pooled(self.cell_histograms(grads, bias, finest), finest, self.cell_sizes)
        else:
            maps = [self.cell_histograms(grads, b, c) for b, c in zip(self.bias, self.cell_sizes)]
        # L2 over the bins; F.normalize's strided reduction is ~40x slower here on CPU
        return [(m / (m * m).sum(2, keepdim=True).sqrt().clamp_min(1e-12)).flatten(1, 2) for m in maps]


@MODELS.register_module()
class PixelTarget(nn.Module):
    """Normalised pixels per patch: each p x p x 3 patch minus its mean, over sqrt(unbiased var + eps).

    Output per patch size p: [B, p*p*3, H/p, W/p] with channels ordered (row, col, colour).
    """

    def __init__(self, cell_sizes=(8, 16, 32, 32), normalize=True, eps=1e-6):
        super().__init__()
        self.cell_sizes, self.normalize, self.eps = tuple(cell_sizes), normalize, eps

    @property
    def channels(self):
        """Target dimension of each scale (RGB input)."""
        return [3 * p * p for p in self.cell_sizes]

    @torch.no_grad()
    def forward(self, images):
        B, C, H, W = images.shape
        out = {}
        for p in sorted(set(self.cell_sizes)):
            patches = images.float().view(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
            patches = patches.reshape(B, H // p, W // p, p * p * C)
            if self.normalize:
                mean = patches.mean(-1, keepdim=True)
                var = patches.var(-1, keepdim=True, unbiased=True)
                patches = (patches - mean) / (var + self.eps).sqrt()
            out[p] = patches.permute(0, 3, 1, 2)
        return [out[p] for p in self.cell_sizes]
