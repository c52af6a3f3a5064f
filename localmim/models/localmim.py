"""LocalMIM: masked image modeling with local multi-scale reconstruction (Wang et al., CVPR 2023).

Read top to bottom: :meth:`LocalMIM.loss` draws a mask, computes every scale's target once,
runs the encoder on the visible patches, and lets one tiny decoder per tapped layer predict its
scale's target at the masked cells. Lower taps predict fine cells, upper taps coarse cells; the
per-scale masked MSE losses are summed with equal weight.

The encoder is any backbone with ``forward_intermediates(x, indices, mask, detach_between)``,
``feature_info(indices)``, ``img_size`` and ``num_prefix_tokens`` (ViT: per-sample random mask on
its patch grid; Swin: one mask per batch on 32 px units, masked tokens dropped).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement

from ..datasets.masking import num_visible_cells
from ..engine.loss_guard import guarded_update
from ..registry import MODELS, build_model
from .decoders import LocalDecoder
from .swin import to_device
from .vit import VisionTransformer


def random_mask(batch, grid_hw, ratio, per_sample=True, device=None):
    """Bool mask [B, h, w], True = masked, with ``h*w - int(h*w*(1-ratio))`` masked cells per sample.

    per_sample=False draws one mask for the whole batch (Swin's efficient masking).
    """
    h, w = grid_hw
    num_keep = num_visible_cells(h * w, ratio)
    noise = torch.rand(batch if per_sample else 1, h * w, device=device)
    order = noise.argsort(dim=1)
    mask = torch.ones_like(noise, dtype=torch.bool)
    mask.scatter_(1, order[:, :num_keep], False)
    return mask.view(-1, h, w).expand(batch, h, w)


def visible_count(masks):
    """Visible cells per sample of host masks (numpy bool [B, h, w]); every sample must have
    the same number (the step's shapes are fixed ahead from it)."""
    visible = (~masks.reshape(masks.shape[0], -1)).sum(1)
    if (visible != visible[0]).any():
        raise ValueError(f'every sample must mask the same number of cells, got visible counts '
                         f'{sorted(set(visible.tolist()))}')
    return int(visible[0])


def resize_mask(mask, size):
    """Mask [B, h, w] -> [B, H, W] float: finer grids repeat each cell, coarser grids average
    (a partly masked coarse cell gets the masked fraction as its weight)."""
    mask = mask.float()
    h, w = mask.shape[-2:]
    H, W = size
    if H >= h:
        if H % h or W % w:
            raise ValueError(f'cannot resize a {h}x{w} mask to {H}x{W}')
        return mask.repeat_interleave(H // h, 1).repeat_interleave(W // w, 2)
    if h % H or w % W:
        raise ValueError(f'cannot resize a {h}x{w} mask to {H}x{W}')
    return F.avg_pool2d(mask[:, None], (h // H, w // W))[:, 0]


def check_taps(taps, num_layers):
    """Taps resolved to non-negative layer indices; refuses out-of-range, unsorted or repeated taps
    (the encoders return tapped features in layer order, paired here with norms and decoders)."""
    taps = list(taps)
    bad = [t for t in taps if not -num_layers <= t < num_layers]
    if bad:
        raise ValueError(f'taps {bad} are out of range for an encoder with {num_layers} tappable layers')
    resolved = [t % num_layers for t in taps]
    if any(b <= a for a, b in zip(resolved, resolved[1:])):
        raise ValueError(f'taps must be strictly increasing layers (fine to coarse, one decoder each), '
                         f'got {taps}; reorder them together with the target cell sizes')
    return resolved


def grid_positions(mask, grid_size, num_visible):
    """Raster positions (visible [B, n_vis], masked [B, n_masked]) of a mask [B, h, w] resized to a
    decoder's grid (as fine as the mask's or finer); ``num_visible`` cells per sample on the mask."""
    masked = resize_mask(mask, grid_size).flatten(1)
    repeat = masked.shape[1] // mask[0].numel()
    # a stable sort puts the zeros (visible) first, each part in raster order
    order = masked.to(torch.uint8).argsort(dim=1, stable=True)
    return order[:, :num_visible * repeat], order[:, num_visible * repeat:]


def cells_at(target, index, scale):
    """The scale x scale target cells of grid positions ``index`` [B, n]: target [B, C, h*s, w*s]
    -> [B, n, s*s, C] (each position's cells in raster order)."""
    B, C, H, W = target.shape
    s = int(scale)
    cells = target.view(B, C, H // s, s, W // s, s).permute(0, 2, 4, 3, 5, 1).reshape(B, -1, s * s, C)
    return cells.gather(1, index[:, :, None, None].expand(-1, -1, s * s, C))


def masked_mse(pred, target, weight):
    """Mean over channels of the squared error, averaged over cells with weights [B, h, w].

    pred, target: [B, C, h, w]. Returns sum(err * weight) / sum(weight).
    """
    err = (pred.float() - target.float()).pow(2).mean(1)
    return (err * weight).sum() / weight.sum()


@MODELS.register_module()
class LocalMIM(BaseModel):
    """LocalMIM pretraining: one tiny decoder and one target scale per tapped encoder layer.

    Args:
        encoder: encoder config (``VisionTransformer`` or ``SwinTransformer``).
        taps: supervised encoder layers, strictly increasing (ViT-B blocks 1, 3, 9, 11; Swin stages
            0-3); tap i predicts the target at ``target.cell_sizes[i]``.
        target: ``HOGTarget``/``PixelTarget`` config with one cell size per tap.
        decoder: ``dims`` (int or one per tap), ``depth``, ``num_heads``, ``mlp_ratio``,
            ``pred_layer`` ('conv' for ViT, 'linear' for Swin; see :class:`LocalDecoder`).
        mask_ratio: fraction of mask units dropped.
        mask_unit: mask cell in pixels (default: the encoder's patch size, the only choice for ViT;
            32 for Swin).
        mask_per_sample: a fresh mask per image (ViT) or one per batch (Swin).
        isolate_gradients: each encoder segment is trained only by its own tap's loss.
        nonfinite: 'raise' (stop naming the iteration and the scale) or 'skip' the update (a
            warning; the skipped iteration logs its non-finite losses as 0).
        compile: compile the masked forward + loss (:meth:`masked_loss`: targets, encoder,
            decoders, losses) with ``torch.compile``: True, a mode name, or a dict of its options.
            The ViT step compiles into one graph; the non-finite guard and the optimizer step stay
            eager. On a GPU use ``'reduce-overhead'``: the compiled forward and backward then
            replay as CUDA graphs, which removes the host's launch cost (ViT-B, batch 256 on an
            H200: 31 ms per step against 41 ms compiled without graphs and 51 ms eager). Each call
            of :meth:`loss` starts a new graph step, so gradient accumulation
            (``accumulative_counts > 1``) is refused in that mode. (mmengine's ``cfg.compile``
            instead compiles the whole ``train_step``, breaking the graph at the guard's host read.)

    Masks: ``data_sample.mask`` (bool [h, w] on the mask-unit grid, e.g. drawn in the data
    pipeline by ``localmim.RandomMaskGenerator``) when every sample has one, else a random mask.
    Host masks (metainfo, which the data preprocessor leaves on the host) are counted there (all
    samples must leave the same number of cells visible) and reach the device through a
    non-blocking copy, so the training step never waits for the device until the guard's one read
    of the loss flags (masks given as device tensors must leave the mask ratio's count visible).
    With ``mask_per_sample=False`` the first sample's mask serves the whole batch.
    """

    def __init__(self, encoder, taps, target, decoder=None, mask_ratio=0.75, mask_unit=None,
                 mask_per_sample=True, isolate_gradients=False, nonfinite='raise', compile=False,
                 data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.encoder = build_model(encoder)
        # ViT taps index blocks, Swin taps index stages
        tappable = self.encoder.blocks if hasattr(self.encoder, 'blocks') else self.encoder.layers
        self.taps = check_taps(taps, len(tappable))
        self.target = build_model(target)
        cells = self.target.cell_sizes
        if len(cells) != len(self.taps):
            raise ValueError(f'target has {len(cells)} cell sizes {cells} but there are {len(self.taps)} taps')
        if nonfinite not in ('raise', 'skip'):
            raise ValueError(f"nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
        self.mask_ratio, self.mask_per_sample = mask_ratio, mask_per_sample
        self.mask_unit = mask_unit or self.encoder.patch_size
        if not isinstance(self.encoder, VisionTransformer) and mask_per_sample:
            raise ValueError(f'{type(self.encoder).__name__} drops masked tokens with one mask per batch: '
                             'set mask_per_sample=False')
        if isinstance(self.encoder, VisionTransformer) and self.mask_unit != self.encoder.patch_size:
            raise ValueError(f'mask_unit={self.mask_unit} does not fit a ViT encoder: it masks whole '
                             f'patches, so mask_unit must equal its patch size {self.encoder.patch_size}')
        self.isolate_gradients, self.nonfinite = isolate_gradients, nonfinite
        decoder = dict(dims=256, depth=1, num_heads=8, mlp_ratio=4.) | (decoder or {})
        dims = decoder.pop('dims')
        dims = [dims] * len(self.taps) if isinstance(dims, int) else list(dims)
        info = self.encoder.feature_info(self.taps)
        img = self.encoder.img_size
        self.tap_norms = nn.ModuleList(nn.LayerNorm(c, eps=1e-6) for c, _ in info)
        self.decoders = nn.ModuleList(
            LocalDecoder(c, (img // stride, img // stride), out_dim, scale=stride / cell, dim=dim,
                         with_cls=self.encoder.num_prefix_tokens > 0, **decoder)
            for (c, stride), cell, dim, out_dim in zip(info, cells, dims, self.target.channels))
        self.loss_names = [f'loss_{cell}px' if cells.count(cell) == 1 else f'loss_{cell}px_{i}'
                           for i, cell in enumerate(cells)]
        if isinstance(compile, str):  # a mode name, e.g. from --cfg-options model.compile=reduce-overhead
            compile = dict(mode=compile)
        self.compile_options = (dict() if compile is True else dict(compile)) if compile else None
        # compiled once, unbound (a deep copy of the model, e.g. for EMA, shares it safely)
        self._compiled_masked_loss = None

    def no_weight_decay(self):
        return {f'encoder.{n}' for n in self.encoder.no_weight_decay()} | {
            f'decoders.{i}.{n}' for i, d in enumerate(self.decoders) for n in d.no_weight_decay()}

    # ---- the algorithm -------------------------------------------------------------------------
    def get_mask(self, images, data_samples=None):
        """Bool [B, H/unit, W/unit], True = masked, on the images' device: from ``data_sample.mask``
        if every sample has one, else random."""
        return self.prepare_mask(images, data_samples)[0]

    def prepare_mask(self, images, data_samples=None):
        """(mask on the images' device [B, h, w], visible cells per sample, Swin's plans or None),
        all made on the host: the mask is copied to the device without waiting, and the count fixes
        the step's shapes ahead. The random fallback is drawn on the host too."""
        B, _, H, W = images.shape
        if H % self.mask_unit or W % self.mask_unit:
            raise ValueError(f'input size {H}x{W} is not divisible by the mask unit of '
                             f'{self.mask_unit} px')
        grid = (H // self.mask_unit, W // self.mask_unit)
        if data_samples and all('mask' in s for s in data_samples):
            masks = [torch.as_tensor(s.mask) for s in data_samples[:B if self.mask_per_sample else 1]]
            if masks[0].numel() != grid[0] * grid[1]:
                raise ValueError(f'data_sample.mask has {masks[0].numel()} cells, expected {grid[0]}x{grid[1]}')
            mask = torch.stack(masks).view(-1, *grid).bool()
            if mask.device.type == 'cpu':  # host data (the pipeline's): counted on the host
                num_visible = visible_count(mask.numpy())
            else:  # given on a device: fixed by the mask ratio
                num_visible = num_visible_cells(grid[0] * grid[1], self.mask_ratio)
        else:
            mask = random_mask(B if self.mask_per_sample else 1, grid, self.mask_ratio)
            num_visible = num_visible_cells(grid[0] * grid[1], self.mask_ratio)
        plans = None
        if not isinstance(self.encoder, VisionTransformer):
            token_grid = self.encoder.patch_embed.grid_size(H, W)
            # static shapes (one compilation for every mask of the count) only where the step is compiled
            plans = self.encoder.mask_plans(token_grid, mask[:1], self.taps, images.device,
                                            static=self.compile_options is not None)
        return to_device(mask, images.device).expand(B, *grid), num_visible, plans

    def forward_encoder(self, images, mask, num_visible=None, plans=None):
        """Normalised features of the tapped layers, visible tokens only. ``num_visible`` and
        ``plans`` (Swin) come from :meth:`prepare_mask`; without them they are read from the mask."""
        if isinstance(self.encoder, VisionTransformer):
            extra = dict(num_visible=num_visible)
        else:
            extra = dict(plans=plans)
        feats = self.encoder.forward_intermediates(images, self.taps, mask=mask,
                                                   detach_between=self.isolate_gradients, **extra)
        return [norm(f) for norm, f in zip(self.tap_norms, feats)]

    def forward_decoders(self, feats, mask, num_visible=None):
        """Per-scale predictions [B, C_s, h_s, w_s] from the visible features (``num_visible``
        cells per sample; read from the mask if not given)."""
        if num_visible is None:
            num_visible = int((~mask[0]).sum())
        return [decoder(feat, visible) for feat, decoder, (visible, _)
                in zip(feats, self.decoders, self.decoder_positions(mask, num_visible))]

    def decoder_positions(self, mask, num_visible):
        """(visible, masked) positions on each decoder's grid (:func:`grid_positions`), computed
        once per distinct grid (the ViT decoders share the token grid)."""
        grids = dict.fromkeys(decoder.grid_size for decoder in self.decoders)
        by_grid = {grid: grid_positions(mask, grid, num_visible) for grid in grids}
        return [by_grid[decoder.grid_size] for decoder in self.decoders]

    def forward_loss(self, preds, targets, mask):
        """One masked-MSE entry per scale (coarse cells weighted by their masked fraction)."""
        return {name: masked_mse(p, t, resize_mask(mask, t.shape[-2:]))
                for name, p, t in zip(self.loss_names, preds, targets)}

    def compute_targets(self, images):
        """Every scale's target, in float32 even under autocast."""
        with torch.autocast(images.device.type, enabled=False):
            return self.target(images.float())

    def masked_loss(self, inputs, mask, num_visible, plans=None):
        """The step's device work for a prepared mask (:meth:`prepare_mask`): targets, encoder,
        decoders, per-scale losses (compiled with ``compile``). No host reads, no data-dependent
        shapes.

        The same losses as ``forward_loss(forward_decoders(...))``, computed with less work: a
        decoder whose target cells each belong to one token (scale >= 1) predicts the masked
        tokens' cells only, the only ones its loss reads; a pooling decoder predicts its grid.
        """
        targets = self.compute_targets(inputs)
        feats = self.forward_encoder(inputs, mask, num_visible, plans)
        losses = {}
        positions = self.decoder_positions(mask, num_visible)
        for name, feat, decoder, target, (visible, masked) in zip(self.loss_names, feats, self.decoders, targets,
                                                                  positions):
            if decoder.scale >= 1:
                pred = decoder(feat, visible, masked)  # [B, n_masked, s*s, C]
                losses[name] = (pred.float() - cells_at(target, masked, decoder.scale).float()).pow(2).mean()
            else:
                losses[name] = masked_mse(decoder(feat, visible), target, resize_mask(mask, target.shape[-2:]))
        return losses

    def loss(self, inputs, data_samples=None):
        prepared = self.prepare_mask(inputs, data_samples)
        if self.compile_options is None:
            return self.masked_loss(inputs, *prepared)
        if self._compiled_masked_loss is None:
            self._compiled_masked_loss = torch.compile(LocalMIM.masked_loss, **self.compile_options)
        if self.uses_cuda_graphs:  # a new step: the last step's graph outputs may now be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        return self._compiled_masked_loss(self, inputs, *prepared)

    @property
    def uses_cuda_graphs(self):
        """Whether the compiled step replays CUDA graphs (``mode`` 'reduce-overhead' or 'max-autotune')."""
        return (self.compile_options or {}).get('mode') in ('reduce-overhead', 'max-autotune')

    # ---- mmengine plumbing ---------------------------------------------------------------------
    def forward(self, inputs, data_samples=None, mode='loss'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.forward_encoder(inputs, *self.prepare_mask(inputs, data_samples))
        raise ValueError(f'invalid mode {mode!r}')

    @torch.no_grad()
    def predict(self, inputs, data_samples=None):
        """Reconstructions for visualisation: per sample, ``mask``, ``preds``, ``targets``, ``weights``."""
        mask, num_visible, plans = self.prepare_mask(inputs, data_samples)
        targets = self.compute_targets(inputs)
        preds = self.forward_decoders(self.forward_encoder(inputs, mask, num_visible, plans), mask, num_visible)
        weights = [resize_mask(mask, t.shape[-2:]) for t in targets]
        return [BaseDataElement(mask=mask[b], preds=[p[b] for p in preds], targets=[t[b] for t in targets],
                                weights=[w[b] for w in weights]) for b in range(inputs.shape[0])]

    def train_step(self, data, optim_wrapper):
        """As BaseModel's, but through :meth:`guarded_update` (the DDP wrapper calls it too)."""
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            losses = self._run_forward(data, mode='loss')
        return self.guarded_update(losses, optim_wrapper)

    def guarded_update(self, losses, optim_wrapper):
        """Backward + step, or, when a loss is non-finite on any rank, stop (naming iteration,
        scales and ranks) or skip the update on every rank (``nonfinite``). Returns the losses
        averaged over ranks for the log."""
        if self.uses_cuda_graphs and getattr(optim_wrapper, '_accumulative_counts', 1) > 1:
            raise ValueError(f"model.compile mode {self.compile_options['mode']!r} replays CUDA graphs, whose "
                             f'outputs (the gradients too) are reused by the next step; it cannot accumulate '
                             f'gradients (optim_wrapper.accumulative_counts='
                             f'{optim_wrapper._accumulative_counts}): use another mode or no accumulation')
        return guarded_update(self, losses, optim_wrapper, self.nonfinite, what='LocalMIM loss')
