#!/usr/bin/env python
"""Convert checkpoints between the LocalMIM release, MAE/timm and this toolkit.

    # a backbone checkpoint for init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')
    python tools/convert_checkpoint.py SRC DST                       # format detected from the keys
    # the release's ViT or Swin pretraining checkpoint -> continue pretraining with load_from=DST
    python tools/convert_checkpoint.py release_vit.pth DST --to pretrain
    # a ViT or Swin backbone (ours, converted, or a fine-tuned classifier) or a pretraining
    # checkpoint -> timm-loadable safetensors; prints the timm.create_model(...) call that loads it
    python tools/convert_checkpoint.py SRC DST.safetensors --to timm

Sources (--from, default auto): release-vit, release-swin (LocalMIM release), timm-vit (timm and
MAE), timm-swin, localmim-vit, localmim-swin (our pretraining checkpoints), backbone-vit,
backbone-swin (``backbone.*`` keys: converted backbones, our fine-tuned or downstream models).
Every conversion prints what was loaded, converted (renamed or changed) and dropped. The
architecture (read from the weights; a ViT's number of heads from the source's meta, its
standard size, or --num-heads) is stored in the output: ``meta['architecture']`` of a .pth,
the metadata of a .safetensors file. Files are read weights-only and written atomically.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from localmim import conversion  # noqa: E402
from localmim.checkpoint import atomic_save, commit_file, load_checkpoint_file, partial_path  # noqa: E402
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
        export = conversion.export_timm_swin if source.endswith('swin') else conversion.export_timm_vit
        if source.startswith(('localmim-', 'release-')):
            return lambda ckpt: export(converter(source, 'backbone')(ckpt)[0])
        return export  # a backbone or classifier checkpoint of ours, or timm weights
    if source.startswith('backbone-'):
        raise SystemExit(f'the checkpoint is already a backbone ({source}); --to timm exports it')
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
                            'localmim-swin', 'backbone-vit', 'backbone-swin'])
    p.add_argument('--to', dest='target', default='backbone', choices=['backbone', 'pretrain', 'timm'])
    p.add_argument('--num-heads', type=int,
                   help="a ViT's number of attention heads, when neither its size nor the source's meta tells")
    p.add_argument('--debug', action='store_true', help='show tracebacks')
    args = p.parse_args(argv)

    checkpoint = load_checkpoint_file(args.src)
    state = conversion.unwrap_state_dict(checkpoint)
    source = pick_source(args.source, conversion.detect_format(state))
    print(f'{args.src}: {source} checkpoint with {len(state)} tensors -> {args.target}')
    new_state, report = converter(source, args.target)(state)
    conversion.print_report(report)
    if 'hog_bias' in report:
        print(f"note: the pretraining config needs target=dict(type='HOGTarget', bias='{report['hog_bias']}')")
    arch = None if args.target == 'pretrain' else architecture(checkpoint, new_state, args.num_heads,
                                                               require_heads=args.target == 'timm')
    if args.target == 'timm':
        if not args.dst.endswith('.safetensors'):
            raise SystemExit('--to timm writes safetensors: give a DST ending in .safetensors')
        save_safetensors_atomic(new_state, args.dst, metadata=dict(format='pt', architecture=json.dumps(arch)))
    else:
        meta = dict(converted_from=source, source=str(args.src))
        if arch is not None:
            meta['architecture'] = arch
        atomic_save({'state_dict': new_state, 'meta': meta}, args.dst)
    print(f'wrote {args.dst} ({len(new_state)} tensors)')
    if args.target == 'timm':
        print('load it with:\n    import timm\n    model = '
              + conversion.timm_create_model_call(arch, str(Path(args.dst).resolve())))


def pick_source(requested, detected):
    """The format to convert from: ``--from`` unless the file is a backbone of that family."""
    if requested == 'auto':
        return detected
    if detected.startswith('backbone-') and requested != detected and requested.endswith(detected[-4:]):
        print(f'note: the file is a backbone checkpoint ({detected}), not {requested}; converting it as {detected}')
        return detected
    return requested


def architecture(checkpoint, state, num_heads=None, require_heads=False):
    """The backbone architecture of ``state`` (see :mod:`localmim.conversion.architecture`), with what
    the source's meta tells; with ``require_heads``, a ViT whose number of heads nothing tells is an
    error."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    known = dict(meta.get('architecture') or {})
    if not known and isinstance(meta.get('cfg'), str):
        known = conversion.architecture_from_config_text(meta['cfg'])
    if num_heads is not None:
        known['num_heads'] = num_heads
    arch = conversion.backbone_architecture(state, known)
    if arch['num_heads'] is None and require_heads:
        raise SystemExit(f"cannot tell the number of attention heads of this ViT (embed_dim {arch['embed_dim']}, "
                         f"depth {arch['depth']}) from its weights or meta: pass --num-heads")
    return arch


def save_safetensors_atomic(state, path, metadata=None):
    from safetensors.torch import save_file
    tmp = partial_path(path)
    save_file(state, tmp, metadata=metadata)
    commit_file(tmp, path)


if __name__ == '__main__':
    run_tool(main)  # errors as one line 'error: ...' (--debug for the traceback)
