"""Time a LocalMIM Swin step with masked tokens dropped against a dense mask-token step.

Both steps are forward + backward (no optimizer) of the same LocalMIM model (encoder, tap norms,
decoders, HOG target, masked-MSE loss) on the same batch and the same 75% mask:
- sparse: what ``LocalMIM.loss`` runs; the Swin encoder runs on the visible tokens only;
- dense (SimMIM-style baseline): the encoder runs on the full grid with every masked token
  replaced by a learned mask token; the decoders then see every position.
The two are timed alternately and the medians compared; the goal is sparse/dense <= 0.4.
On CUDA the clock is wall time (synchronised); on the CPU it is the process's CPU time, which
other jobs on a shared machine do not inflate (run with one thread, e.g. OMP_NUM_THREADS=1,
for the cleanest numbers).

    python tools/benchmark_swin.py --arch base --batch 2 --img-size 224 --iters 5
    python tools/benchmark_swin.py --device cuda --amp --batch 128   # on a GPU

Seen here on the CPU (OMP_NUM_THREADS=1, CPU time, batch 2, 224 px): Swin-T 0.25 vs 0.75 s
(0.33x), Swin-B 0.61-0.73 vs 1.85-1.98 s (0.33-0.37x).
Seen on one H100 (bf16 AMP, 224 px), GPU kernel time per step, sparse vs dense: Swin-B batch 128
46.6 vs 117.0 ms (0.40x), batch 256 89.6 vs 222.5 ms (0.40x); Swin-L batch 128 63.3 vs 170.3 ms
(0.37x). Wall clock is host-bound at small per-GPU batches (the eager sparse step launches about
2800 kernels, ~95 ms of host time): 0.78x at batch 128, 0.51-0.59x at 256, 0.45x at 384.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn

from localmim.models.localmim import LocalMIM


def build_localmim_swin(arch, img_size):
    """LocalMIM Swin with the release's shape: taps 0-3, HOG 18 bins at 8/16/32/32 px, tiny decoders."""
    return LocalMIM(
        encoder=dict(type='SwinTransformer', arch=arch, img_size=img_size),
        taps=[0, 1, 2, 3],
        target=dict(type='HOGTarget', nbins=18, cell_sizes=(8, 16, 32, 32), bias='per_scale'),
        decoder=dict(dims=(64, 128, 128, 128), depth=1, num_heads=4, pred_layer='linear'),
        mask_ratio=0.75, mask_unit=32, mask_per_sample=False)


def dense_mask_token_loss(model, mask_token, images, mask):
    """The baseline: encoder on the full grid, masked tokens replaced by ``mask_token`` [1, 1, C]."""
    encoder = model.encoder
    grid = encoder.patch_embed.grid_size(*images.shape[-2:])
    tokens = encoder.patch_embed(images)
    masked = mask[0].repeat_interleave(grid[0] // mask.shape[1], 0).repeat_interleave(grid[1] // mask.shape[2], 1)
    tokens = torch.where(masked.flatten()[None, :, None], mask_token.to(tokens.dtype), tokens)
    feats = encoder.forward_tokens(tokens, grid, model.taps)
    preds = []
    for norm, decoder, feat in zip(model.tap_norms, model.decoders, feats):
        everywhere = torch.arange(feat.shape[1], device=feat.device).expand(feat.shape[0], -1)
        preds.append(decoder(norm(feat), everywhere))
    with torch.no_grad():
        targets = model.target(images.float())
    return model.forward_loss(preds, targets, mask)


def sparse_loss(model, images, mask):
    """``LocalMIM.loss`` with a given mask: the encoder drops the masked tokens."""
    with torch.no_grad():
        targets = model.target(images.float())
    return model.forward_loss(model.forward_decoders(model.forward_encoder(images, mask), mask), targets, mask)


def benchmark_swin_sparse_vs_dense(arch='base', batch=2, img_size=224, iters=5, device='cpu', amp=False,
                                   warmup=1, out=print):
    """Median seconds of a sparse and a dense fwd+bwd step at 75% masking (wall time on CUDA,
    process CPU time on the CPU); returns a dict with ``sparse_s``, ``dense_s``, ``ratio`` and
    the peak memory of each on CUDA."""
    torch.manual_seed(0)
    model = build_localmim_swin(arch, img_size).to(device)
    mask_token = nn.Parameter(torch.zeros(1, 1, model.encoder.dims[0], device=device))
    nn.init.normal_(mask_token, std=.02)
    images = torch.randn(batch, 3, img_size, img_size, device=device)
    cuda = torch.device(device).type == 'cuda'
    clock = time.perf_counter if cuda else time.process_time

    def step(kind):
        mask = model.get_mask(images)
        model.zero_grad(set_to_none=True)
        mask_token.grad = None
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = clock()
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
            losses = sparse_loss(model, images, mask) if kind == 'sparse' else \
                dense_mask_token_loss(model, mask_token, images, mask)
        sum(losses.values()).backward()
        if cuda:
            torch.cuda.synchronize()
        return clock() - start, torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else 0.0

    times = {'sparse': [], 'dense': []}
    memory = {}
    for i in range(warmup + iters):
        for kind in ('sparse', 'dense'):  # alternate so that load changes hit both alike
            seconds, memory[kind] = step(kind)
            if i >= warmup:
                times[kind].append(seconds)
    result = dict(sparse_s=statistics.median(times['sparse']), dense_s=statistics.median(times['dense']),
                  sparse_gib=memory['sparse'], dense_gib=memory['dense'])
    result['ratio'] = result['sparse_s'] / result['dense_s']
    out(f'Swin-{arch} {img_size}px batch {batch} on {device}{" bf16 AMP" if amp else ""}, {iters} timed steps '
        f'({"wall" if cuda else "CPU"} time): '
        f'sparse {result["sparse_s"] * 1e3:.1f} ms, dense mask-token {result["dense_s"] * 1e3:.1f} ms, '
        f'ratio {result["ratio"]:.3f}' + (f'; peak memory {memory["sparse"]:.2f} vs {memory["dense"]:.2f} GiB'
                                          if cuda else ''))
    return result


def benchmark_dense_encoder_vs_timm(arch='base', batch=2, img_size=224, iters=5, device='cpu', amp=False,
                                    warmup=1, out=print):
    """Our encoder without a mask against timm's Swin (same weights), fwd+bwd of the 4 stage
    outputs: checks that the dense baseline above is not slowed down by our packed windows."""
    import functools

    import timm
    from localmim.models.swin import SWIN_ARCHS, SwinTransformer
    torch.manual_seed(0)
    embed_dim, depths, num_heads = SWIN_ARCHS[arch]
    ours = SwinTransformer(arch=arch, img_size=img_size).to(device)
    ref = timm.models.swin_transformer.SwinTransformer(
        img_size=img_size, embed_dim=embed_dim, depths=depths, num_heads=num_heads, num_classes=0,
        drop_path_rate=0., norm_layer=functools.partial(nn.LayerNorm, eps=1e-6)).to(device)
    ref.load_state_dict(ours.state_dict(), strict=False)
    images = torch.randn(batch, 3, img_size, img_size, device=device)
    cuda = torch.device(device).type == 'cuda'
    runs = {'ours': lambda: ours.run_stages(ours.patch_embed(images), ours.plans(
                ours.patch_embed.grid_size(img_size, img_size), device=images.device), [(i, 'out') for i in range(4)]),
            'timm': lambda: ref.forward_intermediates(images, indices=4, norm=False, intermediates_only=True)}
    times = {k: [] for k in runs}
    for i in range(warmup + iters):
        for name, run in runs.items():
            for module in (ours, ref):
                module.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
                feats = run()
            sum(f.float().mean() for f in feats).backward()
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    ours_s, timm_s = statistics.median(times['ours']), statistics.median(times['timm'])
    out(f'dense Swin-{arch} encoder {img_size}px batch {batch} on {device}{" bf16 AMP" if amp else ""}: '
        f'ours {ours_s * 1e3:.1f} ms, timm {timm_s * 1e3:.1f} ms, ratio {ours_s / timm_s:.3f}')
    return dict(ours_s=ours_s, timm_s=timm_s)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='base')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--amp', action='store_true', help='bf16 autocast')
    parser.add_argument('--timm', action='store_true', help="also time our dense encoder against timm's Swin")
    args = parser.parse_args()
    benchmark_swin_sparse_vs_dense(args.arch, args.batch, args.img_size, args.iters, args.device, args.amp,
                                   args.warmup)
    if args.timm:
        benchmark_dense_encoder_vs_timm(args.arch, args.batch, args.img_size, args.iters, args.device, args.amp,
                                        args.warmup)


if __name__ == '__main__':
    main()
