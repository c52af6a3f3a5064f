"""LocalMIM ViT pretraining checked against independent computations."""
import math

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement

from localmim.models.localmim import masked_mse, random_mask, resize_mask
from localmim.models.targets import HOGTarget, PixelTarget, sobel
from localmim.registry import build_model


def naive_hog(image, nbins, cell, bias=(0.0, 0.0)):
    """Per-pixel loop HOG of one image [3, H, W] -> [3 * nbins, H/cell, W/cell] (numpy)."""
    C, H, W = image.shape
    sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
    out = np.zeros((C, nbins, H // cell, W // cell))
    reflect = lambda i, n: -i if i < 0 else (2 * (n - 1) - i if i >= n else i)  # noqa: E731
    for c in range(C):
        for y in range(H):
            for x in range(W):
                g0 = g1 = 0.0
                for dy in range(3):
                    for dx in range(3):
                        v = image[c, reflect(y + dy - 1, H), reflect(x + dx - 1, W)]
                        g0 += sobel[dy, dx] * v
                        g1 += sobel[dx, dy] * v
                g0, g1 = g0 + bias[0], g1 + bias[1]
                b = math.floor(math.atan2(g0, g1) / math.pi * nbins) % nbins
                out[c, b, y // cell, x // cell] += math.hypot(g0, g1) / cell ** 2
    norm = np.sqrt((out ** 2).sum(1, keepdims=True))
    return (out / np.maximum(norm, 1e-12)).reshape(C * nbins, H // cell, W // cell)


@pytest.mark.parametrize('bias', [None, 'shared', 'per_scale'])
def test_hog_matches_naive_loop(bias):
    torch.manual_seed(0)
    image = torch.randn(1, 3, 16, 16)
    hog = HOGTarget(nbins=9, cell_sizes=(4, 8, 16), bias=bias)
    maps = hog(image)
    for i, (cell, got) in enumerate(zip(hog.cell_sizes, maps)):
        b = (0.0, 0.0) if bias is None else tuple(hog.bias[0 if bias == 'shared' else i].tolist())
        ref = naive_hog(image[0].double().numpy(), 9, cell, b)
        assert got.shape == (1, 27, 16 // cell, 16 // cell)
        np.testing.assert_allclose(got[0].numpy(), ref, atol=2e-5)


def test_hog_18_bins_and_unsigned_orientation():
    # A horizontal ramp: g1 = 0, g0 < 0 -> angle = -pi/2 -> bin floor(-nbins/2) mod nbins.
    ramp = torch.arange(8.).repeat(3, 8, 1)[None]
    maps = HOGTarget(nbins=18, cell_sizes=(8,))(ramp)[0].view(3, 18)
    assert (maps[:, 18 // 2].sub(1).abs() < 1e-6).all()  # interior dominates the only bin
    assert maps.argmax(1).eq(9).all()


def normalised_in_two_precisions(seed=0):
    """uint8 images with flat regions and a 4-level texture (exact Sobel cancellations between
    different pixel values are common), ImageNet-normalised in float32 and in float64."""
    rng = np.random.default_rng(seed)
    img = rng.choice(np.array([100, 101, 102, 104], np.uint8), size=(2, 3, 32, 32))
    img[:, :, :12, :16] = 30  # flat block
    img[:, :, 20:, :] = np.arange(32, dtype=np.uint8) * 7  # constant down each column
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    x = torch.from_numpy(img)
    return (x.float() - mean) / std, (x.double() - mean.double()) / std.double()


@pytest.mark.parametrize('nbins', [9, 18])
def test_hog_bins_are_the_same_in_float32_and_float64(nbins):
    x32, x64 = normalised_in_two_precisions()
    hog = HOGTarget(nbins=nbins, cell_sizes=(4, 8))
    for bias in (None, torch.tensor([0.1, -0.2])):
        (mag32, bins32), (mag64, bins64) = (hog.pixel_bins(hog.gradients(x), bias) for x in (x32, x64))
        assert torch.equal(bins32, bins64), (bins32 != bins64).sum()
        torch.testing.assert_close(mag32.double(), mag64, rtol=1e-5, atol=1e-5)
    for got, ref in zip(hog(x32), hog(x64)):  # so the targets agree to float32 precision
        assert got.dtype == torch.float32 and ref.dtype == torch.float64
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)
    # unsnapped responses put some pixels in different bins: the snapping is what the test checks
    raw32, raw64 = (hog.pixel_bins(sobel(x))[1] for x in (x32, x64))
    assert (raw32 != raw64).sum() > 10


def test_pixel_target_matches_manual():
    torch.manual_seed(0)
    image = torch.randn(2, 3, 16, 16)
    out = PixelTarget(cell_sizes=(8, 16))(image)
    patch = image[1, :, 8:16, 0:8].permute(1, 2, 0).reshape(-1)  # (row, col, colour) order
    ref = (patch - patch.mean()) / (patch.var(unbiased=True) + 1e-6).sqrt()
    torch.testing.assert_close(out[0][1, :, 1, 0], ref)
    assert out[1].shape == (2, 768, 1, 1)


def test_coarse_scale_weights_are_fractional_on_hand_mask():
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, 0] = mask[0, 0, 1] = mask[0, 1, 0] = True  # 3 of the top-left 2x2 group
    mask[0, 3, 3] = True  # 1 of the bottom-right group
    w = resize_mask(mask, (2, 2))
    torch.testing.assert_close(w, torch.tensor([[[0.75, 0.0], [0.0, 0.25]]]))
    fine = resize_mask(mask, (8, 8))
    assert fine[0, :2, :4].all() and fine[0, 2:4, :2].all() and not fine[0, 2:4, 2:4].any()
    # weighted loss: only the two coarse cells with weight contribute, in proportion
    pred, target = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
    target[0, :, 0, 0], target[0, :, 1, 1] = 1.0, 3.0  # errors 1 and 9
    assert masked_mse(pred, target, w).item() == pytest.approx((0.75 * 1 + 0.25 * 9) / 1.0)


def tiny_model(**kw):
    cfg = dict(type='LocalMIM',
               encoder=dict(type='VisionTransformer', arch=None, img_size=32, patch_size=4, embed_dim=32,
                            depth=4, num_heads=2),
               taps=[0, 1, 2, 3],
               target=dict(type='HOGTarget', nbins=9, cell_sizes=(1, 2, 4, 8)),
               decoder=dict(dims=16, num_heads=2))
    cfg.update(kw)
    return build_model(cfg)


def release_style_loss(model, images, mask):
    """Independent re-computation following the release: shuffled visible tokens, concat +
    gather 'unshuffle' in the decoders, per-scale HOG from scratch, loss via mask repetition."""
    enc = model.encoder
    B = images.shape[0]
    L = mask[0].numel()
    flat = mask.view(B, L).float()
    ids_shuffle = torch.argsort(flat + torch.rand(B, L) * 0.1, dim=1)  # visible first, random order
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    keep = ids_shuffle[:, :int((flat[0] == 0).sum())]
    x = enc.patch_embed(images) + enc.pos_embed[:, 1:]
    x = torch.gather(x, 1, keep[..., None].expand(-1, -1, x.shape[-1]))
    x = torch.cat([(enc.cls_token + enc.pos_embed[:, :1]).expand(B, -1, -1), x], 1)
    latents = []
    for i, blk in enumerate(enc.blocks):
        x = blk(x)
        if i in model.taps:
            latents.append(model.tap_norms[model.taps.index(i)](x))
    total = 0
    for k, (lat, dec) in enumerate(zip(latents, model.decoders)):
        y = dec.embed(lat)
        filler = dec.mask_token.repeat(B, L - keep.shape[1], 1)
        y_ = torch.cat([y[:, 1:], filler], 1)
        y_ = torch.gather(y_, 1, ids_restore[..., None].expand(-1, -1, y.shape[-1]))
        y = torch.cat([y[:, :1], y_], 1) + dec.pos_embed
        for blk in dec.blocks:
            y = blk(y)
        y = dec.norm(y)[:, 1:]
        h, w = dec.grid_size
        pred = dec.pred(y.transpose(1, 2).reshape(B, -1, h, w)).flatten(2).transpose(1, 2)
        cell = model.target.cell_sizes[k]
        target = torch.from_numpy(np.stack([naive_hog(im.double().numpy(), 9, cell) for im in images]))
        target = target.float().flatten(2).transpose(1, 2)
        s = enc.patch_size / cell
        if s >= 1:
            s = int(s)
            m = flat.view(B, h, w)[:, :, None, :, None].repeat(1, 1, s, 1, s).reshape(B, -1)
        else:
            s = int(1 / s)
            m = flat.view(B, h // s, s, w // s, s).transpose(2, 3).mean((-2, -1)).reshape(B, -1)
        total = total + (((pred - target) ** 2).mean(-1) * m).sum() / m.sum()
    return total


def test_loss_matches_release_style_recomputation():
    torch.manual_seed(0)
    model = tiny_model().eval()
    images = torch.randn(2, 3, 32, 32)
    mask = random_mask(2, (8, 8), 0.75)
    samples = [BaseDataElement(mask=m.flatten()) for m in mask]
    with torch.no_grad():
        losses = model.loss(images, samples)
        ref = release_style_loss(model, images, mask)
    assert list(losses) == ['loss_1px', 'loss_2px', 'loss_4px', 'loss_8px']
    assert sum(losses.values()).item() == pytest.approx(ref.item(), rel=1e-4)


def test_given_mask_is_honoured_exactly():
    torch.manual_seed(0)
    model = tiny_model()
    mask = random_mask(3, (8, 8), 0.75)
    samples = [BaseDataElement(mask=m.flatten()) for m in mask]
    images = torch.randn(3, 3, 32, 32)
    assert torch.equal(model.get_mask(images, samples), mask)
    out = model.predict(images, samples)
    assert all(torch.equal(o.mask, m) for o, m in zip(out, mask))
    # the encoder saw exactly the visible patches: changing a masked patch changes nothing,
    # changing a visible one changes the features
    feats = model.forward_encoder(images, mask)
    y, x = (mask[0]).nonzero()[0].tolist()
    changed = images.clone()
    changed[0, :, y * 4:(y + 1) * 4, x * 4:(x + 1) * 4] += 5
    torch.testing.assert_close(model.forward_encoder(changed, mask)[0], feats[0])
    y, x = (~mask[0]).nonzero()[0].tolist()
    changed[0, :, y * 4:(y + 1) * 4, x * 4:(x + 1) * 4] += 5
    assert not torch.allclose(model.forward_encoder(changed, mask)[0], feats[0])
    with pytest.raises(ValueError, match='same number'):
        bad = mask.clone()
        bad[0] = False
        model.loss(images, [BaseDataElement(mask=m.flatten()) for m in bad])


def test_random_mask_counts():
    m = random_mask(4, (14, 14), 0.75)
    assert m.shape == (4, 14, 14) and (m.flatten(1).sum(1) == 147).all()
    assert not torch.equal(m[0], m[1])  # per sample
    shared = random_mask(4, (7, 7), 0.75, per_sample=False)
    assert (shared.flatten(1).sum(1) == 37).all() and torch.equal(shared[0], shared[3])


def test_vit_base_parameter_count():
    model = build_model(dict(type='LocalMIM', encoder=dict(type='VisionTransformer', arch='base'),
                             taps=[1, 3, 9, 11], target=dict(type='HOGTarget', nbins=9)))
    encoder = sum(p.numel() for p in model.encoder.parameters())
    assert encoder == pytest.approx(85.8e6, rel=2e-3)
    assert [d.pred[-1].out_channels for d in model.decoders] == [27] * 4
    assert [len(d.pred) for d in model.decoders] == [5, 2, 1, 2]


def test_training_reduces_loss_on_fixed_batch():
    torch.manual_seed(0)
    model = tiny_model()
    images = torch.randn(4, 3, 32, 32)
    samples = [BaseDataElement(mask=m.flatten()) for m in random_mask(4, (8, 8), 0.75)]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for _ in range(30):
        loss = sum(model.loss(images, samples).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.7 * history[0], history


@pytest.mark.parametrize('isolate', [True, False])
def test_gradient_isolation(isolate):
    torch.manual_seed(0)
    model = tiny_model(isolate_gradients=isolate)
    losses = model.loss(torch.randn(2, 3, 32, 32))
    losses['loss_8px'].backward()  # the top tap only
    grad = model.encoder.blocks[0].mlp.fc2.weight.grad
    if isolate:
        assert grad is None or grad.abs().sum() == 0
        assert model.encoder.blocks[3].mlp.fc2.weight.grad.abs().sum() > 0
    else:
        assert grad.abs().sum() > 0


def test_taps_and_mask_unit_are_checked():
    assert tiny_model(taps=[0, 1, -2, -1]).taps == [0, 1, 2, 3]
    for taps, message in (([3, 2, 1, 0], 'strictly increasing'), ([0, 1, 1, 3], 'strictly increasing'),
                          ([1, 2, 3, -1], 'strictly increasing'), ([0, 1, 2, 4], r'\[4\] are out of range')):
        with pytest.raises(ValueError, match=message):
            tiny_model(taps=taps)
    with pytest.raises(ValueError, match='mask_unit=8 .* patch size 4'):
        tiny_model(mask_unit=8)


def test_global_only_baseline():
    model = tiny_model(taps=[3], target=dict(type='HOGTarget', nbins=9, cell_sizes=(4,)))
    losses = model.loss(torch.randn(2, 3, 32, 32))
    assert list(losses) == ['loss_4px'] and len(model.decoders) == 1


@pytest.mark.parametrize('bad', [float('inf'), float('nan')])
def test_a_nonfinite_pixel_reaches_the_target_instead_of_being_snapped_away(bad):
    # The rounding-noise snap is relative to the image's largest value; an inf pixel must not turn
    # every response of its image into "noise" (all-zero, finite targets would hide the corruption).
    images = torch.rand(2, 3, 16, 16)
    images[0, 1, 5, 7] = bad
    targets = HOGTarget(nbins=9, cell_sizes=(4, 8))(images)
    assert all(not torch.isfinite(t[0]).all() for t in targets)
    assert all(torch.isfinite(t[1]).all() for t in targets)  # the other image is unaffected
