"""Render HOG cell histograms as oriented-edge glyphs (classic HOG pictures), in numpy.

Orientation convention, derived from :class:`localmim.models.targets.HOGTarget`. Its Sobel
responses are ``g0 = -dI/dx`` and ``g1 = -dI/dy`` (x = column to the right, y = row downwards;
the kernel [[1,0,-1],...] correlates to minus the derivative), and a pixel's bin is
``floor(theta / pi * nbins) mod nbins`` with ``theta = atan2(g0, g1)``. Unsigned (mod pi), the
gradient direction in (x, y-down) is (sin theta, cos theta); the edge runs perpendicular to it,
along (cos theta, -sin theta) in (x, y-down), i.e. at angle theta counter-clockwise from the
horizontal *as the image is displayed* (y up). So:

    bin k holds edges whose orientation, counter-clockwise from horizontal on screen, lies in
    [k * pi / nbins, (k + 1) * pi / nbins); its glyph is a line through the cell centre at the
    bin centre (k + 0.5) * pi / nbins.

A vertical edge (intensity changing left to right) lands in the bin containing pi/2, a horizontal
edge in bin 0, a '/' edge near pi/4, a '\\' edge near 3 pi/4.

Glyph brightness is the bin value clipped to [0, 1] (HOG cells are L2-normalised, so a cell with
one dominant orientation draws one full-brightness line and a cell with spread orientations draws
several dim ones; no per-image rescaling, so target and prediction panels share one scale).
Overlapping lines of one cell combine by maximum. All glyphs have the same length.
"""
import numpy as np

__all__ = ['glyph_angles', 'glyph_templates', 'render_hog']


def glyph_angles(nbins):
    """Edge angle (radians, counter-clockwise from the displayed horizontal) of each bin's glyph: [nbins]."""
    return (np.arange(nbins) + 0.5) * np.pi / nbins


def glyph_templates(nbins, cell_px, length=0.9, width=None):
    """Anti-aliased line through the centre of a ``cell_px`` square, one per bin: [nbins, cell_px, cell_px] in [0, 1].

    Coverage of a pixel is approximated by ``clip(width/2 + 1/2 - |perpendicular distance|)``
    times the same ramp along the line, with the line ``length * cell_px`` long.
    """
    width = max(1.0, cell_px / 16) if width is None else width
    centre = (cell_px - 1) / 2
    rows, cols = np.mgrid[:cell_px, :cell_px].astype(np.float64)
    x, y_up = cols - centre, centre - rows
    phi = glyph_angles(nbins)[:, None, None]
    along = x * np.cos(phi) + y_up * np.sin(phi)
    across = -x * np.sin(phi) + y_up * np.cos(phi)
    half_length = length * cell_px / 2
    coverage = (np.clip(width / 2 + 0.5 - np.abs(across), 0, 1)
                * np.clip(half_length + 0.5 - np.abs(along), 0, 1))
    return coverage.astype(np.float32)


def render_hog(hist, cell_px):
    """Glyph image of cell histograms.

    Args:
        hist: [C, nbins, h, w] (C = 1 grey or 3 colour channels, as HOGTarget's colour-major output
            reshaped) or [nbins, h, w]; numpy or torch.
        cell_px: rendered size of one cell in pixels.

    Returns:
        float32 image [h * cell_px, w * cell_px, 3] in [0, 1]: colour channel c of the histogram is
        drawn into colour c of the image (one channel is drawn grey).
    """
    hist = np.asarray(hist.detach().cpu() if hasattr(hist, 'detach') else hist, dtype=np.float32)
    if hist.ndim == 3:
        hist = hist[None]
    if hist.ndim != 4 or hist.shape[0] not in (1, 3):
        raise ValueError(f'render_hog expects [C, nbins, h, w] with C in (1, 3) or [nbins, h, w], got {hist.shape}')
    C, nbins, h, w = hist.shape
    templates = glyph_templates(nbins, cell_px)  # [K, p, p]
    values = np.clip(hist, 0, 1)
    # [C, K, h, 1, w, 1] * [1, K, 1, p, 1, p] -> max over K -> [C, h, p, w, p]
    glyphs = (values[:, :, :, None, :, None] * templates[None, :, None, :, None, :]).max(1)
    image = glyphs.reshape(C, h * cell_px, w * cell_px).transpose(1, 2, 0)
    return np.repeat(image, 3, axis=2) if C == 1 else np.ascontiguousarray(image)
