"""Pictures and attention analysis: glyph geometry, HOG convention, attention statistics, tools."""
import csv
import importlib.util
import math
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from localmim.models.layers import Attention
from localmim.models.targets import HOGTarget, PixelTarget
from localmim.visualization.attention import (attention_nmi, attention_probs, grid_positions,
                                              mean_attention_distance, patch_attention)
from localmim.visualization.hog_glyphs import glyph_angles, render_hog
from localmim.visualization.reconstruction import mask_outline, pixel_patches_to_image

from _data_helpers import write_tiny_fashion_mnist

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def angle_difference(a, b):
    """Smallest difference of two unsigned orientations (mod pi), radians."""
    d = (a - b) % math.pi
    return min(d, math.pi - d)


def principal_angle(image):
    """Orientation of the bright pixels of a grey image [H, W] by second moments, counter-clockwise
    from the displayed horizontal (y up), in [0, pi)."""
    rows, cols = np.nonzero(image > 0)
    weights = image[rows, cols]
    x, y = cols.astype(float), -rows.astype(float)
    x, y = x - np.average(x, weights=weights), y - np.average(y, weights=weights)
    mu20, mu02, mu11 = (np.average(x * x, weights=weights), np.average(y * y, weights=weights),
                        np.average(x * y, weights=weights))
    return (0.5 * math.atan2(2 * mu11, mu20 - mu02)) % math.pi


def edge_image(angle_deg, size=32):
    """[1, 3, size, size] image with one smooth straight edge through the centre whose direction
    on screen is ``angle_deg`` counter-clockwise from horizontal."""
    phi = math.radians(angle_deg)
    rows, cols = np.mgrid[:size, :size].astype(float)
    x, y_up = cols - (size - 1) / 2, (size - 1) / 2 - rows
    across = -math.sin(phi) * x + math.cos(phi) * y_up
    grey = torch.tensor(np.tanh(across / 1.5), dtype=torch.float32)
    return grey.expand(1, 3, size, size).contiguous()


# ---- glyphs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('nbins', [9, 18])
def test_single_bin_glyph_is_drawn_at_the_bin_edge_angle(nbins):
    for k in range(nbins):
        hist = np.zeros((1, nbins, 1, 1), np.float32)
        hist[0, k] = 1.0
        image = render_hog(hist, cell_px=41)
        assert image.shape == (41, 41, 3) and np.allclose(image[..., 0], image[..., 2])
        expected = (k + 0.5) * math.pi / nbins
        assert angle_difference(principal_angle(image[..., 0]), expected) < math.radians(1.0), k
    # brightness follows the bin value; colour channel c of the histogram is drawn in colour c
    hist = np.zeros((3, nbins, 1, 1), np.float32)
    hist[1, 0] = 0.5
    image = render_hog(hist, cell_px=21)
    assert image[..., 1].max() == pytest.approx(0.5) and image[..., 0].max() == 0 and image[..., 2].max() == 0


@pytest.mark.parametrize('edge_deg', [90, 0, 45, 135, 30, 110])
def test_hog_energy_lands_in_the_bin_drawn_along_the_edge(edge_deg):
    """A vertical edge (90 deg) goes to the bin whose glyph is vertical, and so on: HOGTarget's
    binning and the renderer agree, including the sign of the diagonals."""
    nbins = 9
    hist = HOGTarget(nbins=nbins, cell_sizes=(32,))(edge_image(edge_deg))[0]  # [27, 1, 1]
    hist = hist.view(3, nbins)
    assert torch.allclose(hist[0], hist[2])
    best = int(hist[0].argmax())
    assert angle_difference(glyph_angles(nbins)[best], math.radians(edge_deg)) <= math.pi / nbins / 2 + 1e-6
    drawn = render_hog(hist.view(3, nbins, 1, 1), cell_px=61)[..., 0]
    assert angle_difference(principal_angle(drawn), math.radians(edge_deg)) < math.pi / nbins


# ---- reconstruction panels ----------------------------------------------------------------------
def test_pixel_patches_are_min_max_scaled_per_patch():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 16, 16)
    image[..., :8, 8:] = 0.3  # a flat patch: drawn mid-grey
    shown = pixel_patches_to_image(PixelTarget(cell_sizes=(8,))(image)[0][0], 8)
    expected = np.empty((16, 16, 3), np.float32)
    for r in range(2):
        for c in range(2):
            patch = image[0, :, 8 * r:8 * r + 8, 8 * c:8 * c + 8].permute(1, 2, 0).numpy()
            span = patch.max() - patch.min()
            expected[8 * r:8 * r + 8, 8 * c:8 * c + 8] = (patch - patch.min()) / span if span > 0 else 0.5
    np.testing.assert_allclose(shown, expected, atol=1e-4)


def test_mask_outline_hand_example():
    mask = torch.tensor([[True, False], [True, True]])
    outline = mask_outline(mask, (4, 4))
    expected = np.array([[1, 1, 0, 0],
                         [1, 1, 0, 0],
                         [1, 0, 1, 1],
                         [1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(outline, expected)


# ---- attention statistics -----------------------------------------------------------------------
def test_mean_attention_distance_hand_value():
    positions = grid_positions((2, 2), 16)  # (0,0) (0,16) (16,0) (16,16)
    patches = torch.tensor([[0, 0, 0, 1.],
                            [.5, .5, 0, 0],
                            [.25, .25, .25, .25],
                            [0, 0, 1., 0]])
    hand = (16 * math.sqrt(2) + 8 + (16 + 16 * math.sqrt(2) + 0 + 16) / 4 + 16) / 4
    # with a cls token taking some of each row's mass: dropped, rows renormalised
    full = torch.zeros(5, 5)
    full[:, 0] = torch.tensor([.2, .5, .1, .3, .6])
    full[0, 1:] = .2
    full[1:, 1:] = patches * (1 - full[1:, :1])
    assert torch.allclose(full.sum(-1), torch.ones(5))
    assert mean_attention_distance(patch_attention(full, 1), positions).item() == pytest.approx(hand)


def naive_nmi(attn):
    """Loop version: p(q,k) = a_qk / N, I(Q;K) / sqrt(H(Q) H(K))."""
    n_q, n_k = attn.shape
    p = attn.double().numpy() / n_q
    p_k = p.sum(0)
    mutual = sum(p[q, k] * math.log(p[q, k] / ((1 / n_q) * p_k[k]))
                 for q in range(n_q) for k in range(n_k) if p[q, k] > 0)
    h_k = -sum(v * math.log(v) for v in p_k if v > 0)
    return mutual / math.sqrt(math.log(n_q) * h_k)


def test_nmi_zero_for_identical_rows_one_for_permutation():
    torch.manual_seed(0)
    row = torch.rand(16).softmax(0)
    assert attention_nmi(row.expand(16, 16)).item() == pytest.approx(0, abs=1e-9)
    perm = torch.eye(16)[torch.randperm(16)]
    assert attention_nmi(perm).item() == pytest.approx(1, abs=1e-9)
    # a random map matches the loop, lies strictly between, and heads/batches are independent
    maps = (torch.randn(2, 3, 16, 16) * 2).softmax(-1)
    nmi = attention_nmi(maps)
    assert nmi.shape == (2, 3) and ((nmi > 0) & (nmi < 1)).all()
    assert nmi[1, 2].item() == pytest.approx(naive_nmi(maps[1, 2]), rel=1e-9)


@pytest.mark.parametrize('rel_pos', [None, 'table', 'decomposed'])
def test_recomputed_attention_reproduces_the_fused_attention(rel_pos):
    torch.manual_seed(0)
    cls = rel_pos == 'table'  # BEiT's table with a cls token; ViTDet's decomposed positions without
    n = 7 if cls else 6
    attn = Attention(16, 4, rel_pos_grid=(2, 3) if rel_pos else None, rel_pos_cls=cls,
                     rel_pos_type=rel_pos or 'table').eval()
    if rel_pos == 'decomposed':  # non-zero tables, so that they matter
        torch.nn.init.normal_(attn.rel_pos_h)
        torch.nn.init.normal_(attn.rel_pos_w)
    x = torch.randn(2, n, 16)
    bias = torch.rand(2, 1, n, n) > 0.3
    bias[..., torch.arange(n), torch.arange(n)] = True
    for attn_bias in (None, bias):
        probs = attention_probs(attn, x, attn_bias)
        v = attn.qkv(x).view(2, n, 3, 4, 4)[:, :, 2].transpose(1, 2)
        manual = attn.proj((probs @ v).transpose(1, 2).reshape(2, n, 16))
        assert torch.allclose(manual, attn(x, attn_bias), atol=1e-5)
        assert torch.allclose(probs.sum(-1), torch.ones(2, 4, n))


# ---- tools end to end ---------------------------------------------------------------------------
def tiny_config(path, target):
    path.write_text(f"""
model = dict(
    type='LocalMIM',
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[72.9] * 3, std=[90.0] * 3),
    encoder=dict(type='VisionTransformer', arch=None, img_size=32, patch_size=8, embed_dim=32, depth=2,
                 num_heads=2),
    taps=[0, 1],
    target={target!r},
    decoder=dict(dims=16, depth=1, num_heads=2),
)
""")
    return str(path)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tiny_setup(tmp_path_factory):
    from localmim.visualization.inputs import load_model
    root = tmp_path_factory.mktemp('tiny')
    write_tiny_fashion_mnist(str(root / 'fmnist'), num_train=4, num_test=8)
    hog_cfg = tiny_config(root / 'hog.py', dict(type='HOGTarget', nbins=9, cell_sizes=(4, 8)))
    pixel_cfg = tiny_config(root / 'pixel.py', dict(type='PixelTarget', cell_sizes=(8, 16)))
    checkpoints = {}
    for name, cfg in (('hog', hog_cfg), ('pixel', pixel_cfg)):
        torch.manual_seed(1)
        model, _ = load_model(cfg)
        checkpoints[name] = str(root / f'{name}.pth')
        torch.save({'state_dict': model.state_dict()}, checkpoints[name])
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(root / 'a.png')
    return dict(root=root, hog=hog_cfg, pixel=pixel_cfg, ckpt=checkpoints)


def test_visualize_reconstruction_tool(tiny_setup):
    tool = load_tool('visualize_reconstruction')
    s = tiny_setup
    for name, extra in (('hog', ['--indices', '0', '3']), ('pixel', ['--images', str(s['root'] / 'a.png')])):
        out = s['root'] / f'recon_{name}.png'
        tool.main([s[name], s['ckpt'][name], '--data-root', str(s['root'] / 'fmnist'), '--panel-px', '64',
                   '--out', str(out)] + extra)
        image = np.asarray(Image.open(out))
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300 and image.std() > 10


def test_load_model_refuses_a_mismatched_checkpoint(tiny_setup):
    from localmim.visualization.inputs import load_model
    with pytest.raises(ValueError, match='hog.pth'):
        load_model(tiny_setup['pixel'], tiny_setup['ckpt']['hog'])


def test_analyze_attention_tool(tiny_setup):
    tool = load_tool('analyze_attention')
    s = tiny_setup
    out_dir = s['root'] / 'attention'
    tool.main(['--model', 'hog', s['hog'], s['ckpt']['hog'], '--model', 'random', s['pixel'], 'random',
               '--data-root', str(s['root'] / 'fmnist'), '--num-images', '5', '--batch-size', '2',
               '--out-dir', str(out_dir)])
    with open(out_dir / 'attention_stats.csv') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * (2 + 1)  # models x layers x (heads + mean)
    for row in rows:
        assert 0 < float(row['mean_attention_distance_px']) < 32 * math.sqrt(2)
        assert 0 <= float(row['nmi']) <= 1
    means = [r for r in rows if r['model'] == 'hog' and r['layer'] == '1']
    heads = [float(r['mean_attention_distance_px']) for r in means if r['head'] != 'mean']
    assert float(means[-1]['mean_attention_distance_px']) == pytest.approx(np.mean(heads), abs=1e-3)
    assert osp.getsize(out_dir / 'attention_stats.png') > 1000
