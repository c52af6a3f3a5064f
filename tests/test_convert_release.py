"""Importing the LocalMIM release's ViT pretraining checkpoint to continue pretraining."""
import subprocess
import sys
from pathlib import Path

import torch
from mmengine.runner.checkpoint import load_checkpoint
from mmengine.structures import BaseDataElement

from localmim.models.localmim import random_mask
from localmim.models.targets import SOBEL
from localmim.registry import build_model

ROOT = Path(__file__).resolve().parents[1]


def tiny(bias):
    return build_model(dict(
        type='LocalMIM',
        encoder=dict(type='VisionTransformer', arch=None, img_size=32, patch_size=8, embed_dim=32, depth=4,
                     num_heads=2, final_norm=False),
        taps=[0, 1, 2, 3], target=dict(type='HOGTarget', nbins=18, cell_sizes=(2, 4, 8, 16), bias=bias),
        decoder=dict(dims=16, num_heads=2)))


def to_release_layout(model):
    """Write a model's weights with the release's key names, by hand (independent of the converter)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith('encoder.'):
            name = key[len('encoder.'):]
            if not name.startswith('norm.'):  # the release encoder has per-tap norms only
                out[name] = value.clone()
        elif key.startswith('tap_norms.'):
            out['norm.' + key[len('tap_norms.'):]] = value.clone()
        elif key.startswith('decoders.'):
            out['decoder.' + key[len('decoders.'):]] = value.clone()
    for i, bias in enumerate(model.target.bias):
        out[f'hog_enc.{i}.conv.weight'] = torch.stack([SOBEL, SOBEL.t()])[:, None].clone()
        out[f'hog_enc.{i}.conv.bias'] = bias.clone()
    return out


def test_release_vit_checkpoint_continues_pretraining(tmp_path):
    torch.manual_seed(0)
    source = tiny('per_scale')
    with torch.no_grad():  # make every weight distinctive
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    release = tmp_path / 'release.pth'
    torch.save({'model': to_release_layout(source), 'epoch': 799}, release)
    converted = tmp_path / 'converted.pth'
    run = subprocess.run([sys.executable, 'tools/convert_checkpoint.py', str(release), str(converted),
                          '--to', 'pretrain'], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert 'release-vit' in run.stdout and 'dropped' in run.stdout and "bias='per_scale'" in run.stdout

    target = tiny('per_scale')
    load_checkpoint(target, str(converted), strict=True)  # what load_from does, but strict
    images = torch.randn(2, 3, 32, 32)
    samples = [BaseDataElement(mask=m.flatten()) for m in random_mask(2, (4, 4), 0.75)]
    with torch.no_grad():
        expected, got = source.loss(images, samples), target.loss(images, samples)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key])
    assert torch.equal(target.target.bias, source.target.bias)


def test_non_sobel_hog_kernel_is_refused(tmp_path):
    state = to_release_layout(tiny('shared'))
    state['hog_enc.0.conv.weight'] = torch.randn(2, 1, 3, 3)
    bad = tmp_path / 'bad.pth'
    torch.save({'model': state}, bad)
    run = subprocess.run([sys.executable, 'tools/convert_checkpoint.py', str(bad), str(tmp_path / 'o.pth'),
                          '--to', 'pretrain'], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode != 0 and 'hog_enc.0.conv.weight' in run.stderr
