"""Pictures of LocalMIM's reconstructions: the masked input and, per scale, target beside prediction.

Conventions:
- One random mask per image (seed it with ``torch.manual_seed``), shared by every scale, as in training.
- Masked input: mask units filled with a flat slate colour (nothing of their content shown).
- Target and prediction are shown WHOLE, with the masked region outlined in yellow on both and
  the visible region dimmed to 40 % brightness. Only the masked cells are trained (the loss ignores
  visible cells), so inside the outline is what the model reconstructs; outside it the prediction
  is unsupervised. The caption under each prediction
  gives the sample's masked MSE at that scale (the training loss term).
- HOG targets: oriented-edge glyphs per cell (:mod:`.hog_glyphs`: glyph along the EDGE direction,
  brightness = bin value, colour channel c of the histogram drawn in colour c, so grey images
  give white glyphs).
- Pixel targets: each p x p patch is min-max scaled to [0, 1] on its own (target and prediction
  alike; the patch's true mean/contrast is not used, so nothing of the masked image leaks into the
  picture); a patch with no contrast is drawn mid-grey.
"""
import math

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..models.localmim import masked_mse  # noqa: E402
from ..models.targets import HOGTarget, PixelTarget  # noqa: E402
from .hog_glyphs import render_hog  # noqa: E402

__all__ = ['pixel_patches_to_image', 'mask_outline', 'resize_nearest', 'reconstruction_panels',
           'reconstruction_figure', 'save_reconstruction_figure', 'reconstruction_image']

MASK_FILL = np.array([0.25, 0.28, 0.38], np.float32)
OUTLINE = np.array([1.0, 0.85, 0.0], np.float32)
VISIBLE_DIM = 0.4


def pixel_patches_to_image(patches, patch):
    """PixelTarget map [p*p*C, h, w] (channels in (row, col, colour) order) -> image [h*p, w*p, C]
    in [0, 1], each patch min-max scaled on its own (no contrast: 0.5)."""
    patches = torch.as_tensor(patches).detach().float().cpu()
    D, h, w = patches.shape
    C = D // (patch * patch)
    if C * patch * patch != D:
        raise ValueError(f'pixel target has {D} channels, not a multiple of {patch}x{patch}')
    x = patches.view(patch, patch, C, h, w)
    low = x.amin(dim=(0, 1, 2), keepdim=True)
    span = x.amax(dim=(0, 1, 2), keepdim=True) - low
    x = torch.where(span > 1e-6, (x - low) / span.clamp_min(1e-6), torch.full_like(x, 0.5))
    return x.permute(3, 0, 4, 1, 2).reshape(h * patch, w * patch, C).numpy()


def resize_nearest(array, size):
    """Nearest-neighbour resize of [H, W, ...] to ``size`` (h, w): output pixel (r, c) takes input
    pixel (r * H // h, c * W // w)."""
    array = np.asarray(array)
    H, W = array.shape[:2]
    rows = np.arange(size[0]) * H // size[0]
    cols = np.arange(size[1]) * W // size[1]
    return array[rows][:, cols]


def mask_outline(mask, size, thickness=1):
    """Pixels [h, w] (bool) of a ``thickness``-wide band just inside the border of the masked
    region of ``mask`` [gh, gw] (True = masked), drawn at ``size`` (h, w)."""
    region = resize_nearest(np.asarray(torch.as_tensor(mask).cpu(), dtype=bool), size)
    inner = region.copy()
    for _ in range(thickness):
        padded = np.pad(inner, 1, constant_values=False)
        inner = (inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return region & ~inner


def _as_rgb(image):
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def _render(target_module, values, scale_index, panel_px):
    """One scale's target or prediction [C, h, w] -> image [~panel_px, ~panel_px, 3] in [0, 1]."""
    values = values.detach().float().cpu()
    _, h, w = values.shape
    if isinstance(target_module, HOGTarget):
        nbins = target_module.nbins
        cell_px = max(6, math.ceil(panel_px / max(h, w)))
        return render_hog(values.view(-1, nbins, h, w), cell_px)
    if isinstance(target_module, PixelTarget):
        patch = target_module.cell_sizes[scale_index]
        image = _as_rgb(pixel_patches_to_image(values, patch))
        factor = max(1, round(panel_px / image.shape[0]))
        return resize_nearest(image, (image.shape[0] * factor, image.shape[1] * factor))
    raise TypeError(f'no renderer for target {type(target_module).__name__}; expected HOGTarget or PixelTarget')


def _outlined(image, mask):
    """Visible (untrained) region dimmed to ``VISIBLE_DIM``, masked region outlined."""
    masked = resize_nearest(np.asarray(mask.cpu(), dtype=bool), image.shape[:2])
    image = np.where(masked[..., None], image, image * VISIBLE_DIM)
    thickness = max(1, image.shape[0] // 160)
    image[mask_outline(mask, image.shape[:2], thickness)] = OUTLINE
    return image


@torch.no_grad()
def reconstruction_panels(model, inputs, images, panel_px=384):
    """Run ``model.predict`` and render every panel.

    Args:
        model: a LocalMIM model (``predict``, ``target`` with ``cell_sizes``).
        inputs: normalised inputs [B, 3, H, W] (see :func:`.inputs.preprocess`).
        images: the same images as uint8 [B, 3, H, W] RGB, for display.
        panel_px: approximate rendered size of each panel.

    Returns:
        per sample a dict: ``input`` and ``masked`` images [P, P, 3], ``scales``: list of
        (cell size, target image, prediction image, masked MSE) per scale, fine to coarse.
    """
    results = model.predict(inputs)
    H = images.shape[-1]
    factor = max(1, round(panel_px / H))
    out = []
    for image, result in zip(images, results):
        shown = resize_nearest(image.permute(1, 2, 0).numpy().astype(np.float32) / 255,
                               (image.shape[1] * factor, image.shape[2] * factor))
        masked = shown.copy()
        masked[resize_nearest(result.mask.cpu().numpy(), masked.shape[:2])] = MASK_FILL
        scales = []
        for s, (pred, target, weight) in enumerate(zip(result.preds, result.targets, result.weights)):
            mse = masked_mse(pred[None], target[None], weight[None]).item()
            scales.append((model.target.cell_sizes[s],
                           _outlined(_render(model.target, target, s, panel_px), result.mask),
                           _outlined(_render(model.target, pred, s, panel_px), result.mask), mse))
        out.append(dict(input=shown, masked=masked, scales=scales))
    return out


def reconstruction_figure(panels, names, title=None):
    """One row per sample: input, masked input, then target | prediction per scale.

    Returns:
        (matplotlib Figure, dpi to render it at); close it with ``plt.close(fig)``.
    """
    num_scales = len(panels[0]['scales'])
    cols = 2 + 2 * num_scales
    fig, axes = plt.subplots(len(panels), cols, figsize=(2.1 * cols, 2.35 * len(panels) + 0.4), squeeze=False)
    for row, (panel, name) in enumerate(zip(panels, names)):
        cells = [(panel['input'], name, None), (panel['masked'], 'masked input', None)]
        for cell, target, pred, mse in panel['scales']:
            cells += [(target, f'{cell} px target', None), (pred, f'{cell} px prediction', f'masked MSE {mse:.3f}')]
        for ax, (image, label, caption) in zip(axes[row], cells):
            ax.imshow(np.clip(image, 0, 1), interpolation='antialiased')
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if caption:
                ax.set_xlabel(caption, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    dpi = max(100, max(p.shape[0] for panel in panels for _, p, _, _ in panel['scales']) / 2.0)
    return fig, min(dpi, 200)


def save_reconstruction_figure(panels, names, path, title=None):
    """Write :func:`reconstruction_figure` as a PNG to ``path``."""
    fig, dpi = reconstruction_figure(panels, names, title)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def reconstruction_image(panels, names, title=None):
    """:func:`reconstruction_figure` rendered to an RGB uint8 array [H, W, 3]."""
    fig, dpi = reconstruction_figure(panels, names, title)
    fig.set_dpi(dpi)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image
