#!/usr/bin/env python
"""Convert checkpoints between the LocalMIM release, MAE/timm and this toolkit.

    # a backbone checkpoint for init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')
    python tools/convert_checkpoint.py SRC DST                       # format detected from the keys
    # the release's ViT or Swin pretraining checkpoint -> continue pretraining with load_from=DST
    python tools/convert_checkpoint.py release_vit.pth DST --to pretrain
    # a backbone (ours, converted, or a fine-tuned classifier) -> timm-loadable safetensors
    python tools/convert_checkpoint.py SRC DST.safetensors --to timm

Sources (--from, default auto): release-vit, release-swin (LocalMIM release), timm-vit (timm and
MAE), timm-swin, localmim-vit, localmim-swin (our pretraining checkpoints). Every conversion
prints what was loaded, converted (renamed or changed) and dropped. Files are read weights-only
and written atomically.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from localmim import conversion  # noqa: E402
from localmim.checkpoint import atomic_save, load_checkpoint_file  # noqa: E402
from localmim.engine.launch import run_tool  # noqa: E402


def converter(source, target):
    """The conversion function for (source format, target)."""
    if target == 'pretrain':
        if source == 'release-vit':
            return conversion.convert_release_vit_pretrain
        if source == 'release-swin':
            return conversion.convert_release_swin_pretrain
        raise SystemExit(f'--to pretrain converts release-vit and release-swin checkpoints, not {source}')
    if target == 'timm':
        if source in ('localmim-vit', 'release-vit'):
            return lambda ckpt: conversion.export_timm_vit(converter(source, 'backbone')(ckpt)[0])
        return conversion.export_timm_vit  # a backbone or classifier checkpoint of ours
    table = {
        'release-vit': conversion.convert_release_vit,
        'timm-vit': conversion.convert_timm_vit,
        'localmim-vit': conversion.convert_localmim_pretrain,
    }
    if hasattr(conversion, 'convert_release_swin'):
        table['release-swin'] = conversion.convert_release_swin
        table['timm-swin'] = conversion.convert_timm_swin
        table['localmim-swin'] = conversion.convert_localmim_swin_pretrain
    if source not in table:
        raise SystemExit(f'no conversion from {source} to {target} (known: {sorted(table)})')
    return table[source]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src', help='checkpoint to convert (.pth/.pt/.bin or .safetensors)')
    p.add_argument('dst', help='output file (.pth; .safetensors for --to timm)')
    p.add_argument('--from', dest='source', default='auto',
                   choices=['auto', 'release-vit', 'release-swin', 'timm-vit', 'timm-swin', 'localmim-vit',
                            'localmim-swin'])
    p.add_argument('--to', dest='target', default='backbone', choices=['backbone', 'pretrain', 'timm'])
    p.add_argument('--debug', action='store_true', help='show tracebacks')
    args = p.parse_args(argv)

    checkpoint = load_checkpoint_file(args.src)
    state = conversion.unwrap_state_dict(checkpoint)
    source = conversion.detect_format(state) if args.source == 'auto' else args.source
    print(f'{args.src}: {source} checkpoint with {len(state)} tensors -> {args.target}')
    new_state, report = converter(source, args.target)(state)
    conversion.print_report(report)
    if 'hog_bias' in report:
        print(f"note: the pretraining config needs target=dict(type='HOGTarget', bias='{report['hog_bias']}')")
    if args.target == 'timm':
        from safetensors.torch import save_file
        if not args.dst.endswith('.safetensors'):
            raise SystemExit('--to timm writes safetensors: give a DST ending in .safetensors')
        tmp = f'{args.dst}.partial'
        save_file(new_state, tmp)
        Path(tmp).replace(args.dst)
    else:
        atomic_save({'state_dict': new_state, 'meta': dict(converted_from=source, source=str(args.src))},
                    args.dst)
    print(f'wrote {args.dst} ({len(new_state)} tensors)')


if __name__ == '__main__':
    run_tool(main)  # errors as one line 'error: ...' (--debug for the traceback)
