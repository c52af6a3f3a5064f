#!/usr/bin/env python
"""Throughput of LocalMIM pretraining, and its cost relative to the bare masked encoder.

Measures, in one run and on one device, with the config's model:
  * full step: LocalMIM forward + backward (targets, encoder, decoders, loss; no optimizer update);
  * bare step: the masked encoder forward + backward alone (same mask ratio, same visible tokens);
  * targets: the target computation alone.
  * with ``--compile``: the full step with the model's ``compile`` option (torch.compile of the
    masked forward + loss, ``--compile-mode`` e.g. 'reduce-overhead' for CUDA graphs; the compile
    time is reported apart) and the bare encoder compiled alike, for a compiled full/bare ratio.
Reports images/s of each, peak memory (CUDA: allocated; CPU: the process's max RSS), the ratio
full/bare and the target share of a full step, the achieved TFLOP/s (model FLOPs counted by
torch's FlopCounterMode) and on known GPUs the MFU. For a Swin encoder it also times the dense
baseline (every masked token replaced by a mask token, the encoder on the full grid; see
tools/benchmark_swin.py) and reports sparse/dense wall clock.

    python tools/benchmark_pretrain.py mm_configs/pretrain/localmim_vit-b_1600e_in1k.py --batch-size 8
    python tools/benchmark_pretrain.py CONFIG --device cuda --dtype bfloat16 --batch-size 256 --compile \
        --compile-mode reduce-overhead
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from mmengine.config import Config  # noqa: E402

from localmim.registry import build_model  # noqa: E402

PEAK_TFLOPS = {'H100': 989.0, 'H200': 989.0, 'A100': 312.0}  # dense bf16/fp16 tensor-core peaks


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--iters', type=int, default=10, help='timed iterations of each step')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16', 'float16'],
                   help='autocast dtype (float32 = no autocast)')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--clock', default='wall', choices=['wall', 'process'],
                   help="'process': CPU time of this process (all its threads), steadier than wall "
                        'clock on a shared CPU machine; ratios only (images/s then per busy core-set)')
    p.add_argument('--compile', action='store_true', help="also time the step with the model's compile=True")
    p.add_argument('--compile-mode', default=None, help="torch.compile mode (e.g. 'max-autotune')")
    p.add_argument('--cfg-options', nargs='*', default=[], help='key=value overrides of the model config')
    return p.parse_args()


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def timed(fn, device, iters, warmup, clock=time.perf_counter):
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        start = clock()
        fn()
        sync(device)
        times.append(clock() - start)
    return times


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config.fromfile(args.config)
    for item in args.cfg_options:
        key, value = item.split('=', 1)
        cfg.merge_from_dict({key: eval(value)})
    device = torch.device(args.device)
    model = build_model(cfg.model).to(device).train()
    model.data_preprocessor = None  # inputs below are already normalised
    size = model.encoder.img_size
    images = torch.randn(args.batch_size, 3, size, size, device=device)
    dtype = getattr(torch, args.dtype)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=args.dtype != 'float32')
    params = [p for p in model.parameters() if p.requires_grad]

    def full_step():  # eager, whatever the model's compile option
        with autocast:
            loss = sum(model.masked_loss(images, *model.prepare_mask(images)).values())
        loss.backward()
        for p in params:
            p.grad = None

    def bare_loss(model, images, mask, num_visible, plans):
        extra = dict(plans=plans) if plans is not None else dict(num_visible=num_visible)
        out = model.encoder.forward_intermediates(images, [max(model.taps)], mask=mask, **extra)[-1]
        return out.float().pow(2).mean()

    def bare_step():
        with autocast:
            loss = bare_loss(model, images, *model.prepare_mask(images))
        loss.backward()
        for p in params:
            p.grad = None

    def target_step():
        model.compute_targets(images)

    steps = [(full_step, 'full'), (bare_step, 'bare'), (target_step, 'targets')]
    compile_time = None
    if args.compile:
        # the model's own compile option (LocalMIM.loss), and the bare encoder compiled alike
        model.compile_options = dict(mode=args.compile_mode)
        compiled_bare_loss = torch.compile(bare_loss, mode=args.compile_mode)

        def compiled_step():
            with autocast:
                loss = sum(model.loss(images).values())
            loss.backward()
            for p in params:
                p.grad = None

        def compiled_bare_step():
            if model.uses_cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with autocast:
                loss = compiled_bare_loss(model, images, *model.prepare_mask(images))
            loss.backward()
            for p in params:
                p.grad = None
        start = time.perf_counter()
        compiled_step()
        sync(device)
        compile_time = time.perf_counter() - start
        compiled_bare_step()
        steps += [(compiled_step, 'compiled'), (compiled_bare_step, 'compiled bare')]
    if type(model.encoder).__name__ == 'SwinTransformer':
        from benchmark_swin import dense_mask_token_loss
        token = torch.nn.Parameter(torch.zeros(1, 1, model.encoder.dims[0], device=device))

        def dense_step():
            with autocast:
                loss = sum(dense_mask_token_loss(model, token, images, model.get_mask(images)).values())
            loss.backward()
            for p in params:
                p.grad = None
        steps.append((dense_step, 'dense'))

    clock = time.process_time if args.clock == 'process' else time.perf_counter
    # interleave the measurements so that drift affects every side alike
    samples = {name: [] for _, name in steps}
    for step, _ in steps:
        timed(step, device, 0, args.warmup)
    for _ in range(args.iters):
        for step, name in steps:
            samples[name] += timed(step, device, 1, 0, clock)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        full_step()
        peak = f'{torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GiB allocated (full step)'
    else:
        import resource
        peak = f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GiB max RSS of the process'
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        full_step()
    flops = counter.get_total_flops()
    t_full, t_bare, t_target = (statistics.median(samples[k]) for k in ('full', 'bare', 'targets'))

    def spread(name):
        values = sorted(samples[name])
        return f'[{values[0] * 1e3:.0f}-{values[-1] * 1e3:.0f}]'
    print(f'config       : {args.config}')
    hardware = torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'
    print(f'device/dtype : {device} ({hardware}) / {args.dtype}, batch {args.batch_size}, {size} px, '
          f'median of {args.iters} (min-max), {args.clock} clock')
    print(f'full step    : {t_full * 1e3:8.1f} ms {spread("full")} -> {args.batch_size / t_full:8.1f} images/s '
          f'(fwd+bwd, no optimizer)')
    print(f'bare encoder : {t_bare * 1e3:8.1f} ms {spread("bare")} -> ratio full/bare = {t_full / t_bare:.3f}')
    print(f'targets      : {t_target * 1e3:8.1f} ms  -> {100 * t_target / t_full:.1f}% of a full step')
    if 'compiled' in samples:
        t_comp, t_comp_bare = (statistics.median(samples[k]) for k in ('compiled', 'compiled bare'))
        print(f'compiled     : {t_comp * 1e3:8.1f} ms {spread("compiled")} -> '
              f'{args.batch_size / t_comp:8.1f} images/s, compiled/eager = {t_comp / t_full:.3f} '
              f'(mode {args.compile_mode or "default"}; compiling took {compile_time:.0f} s)')
        print(f'compiled bare: {t_comp_bare * 1e3:8.1f} ms {spread("compiled bare")} -> ratio compiled '
              f'full/bare = {t_comp / t_comp_bare:.3f}')
    if 'dense' in samples:
        t_dense = statistics.median(samples['dense'])
        print(f'dense Swin   : {t_dense * 1e3:8.1f} ms {spread("dense")} -> ratio sparse/dense = '
              f'{t_full / t_dense:.3f} (mask-token baseline)')
    print(f'peak memory  : {peak}')
    best = min(statistics.median(samples[k]) for k in ('full', 'compiled') if k in samples)
    tflops = flops / best / 1e12
    mfu = ''
    if device.type == 'cuda':
        name = torch.cuda.get_device_name()
        peak_tflops = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
        mfu = f', MFU {100 * tflops / peak_tflops:.1f}% of {peak_tflops:.0f}' if peak_tflops else ''
    print(f'throughput   : {flops / args.batch_size / 1e9:.1f} GFLOP per image, {tflops:.3f} TFLOP/s '
          f'(fastest full step){mfu}')


if __name__ == '__main__':
    main()
