"""mmcv's compiled nms and RoIAlign against hand-computed values and naive Python loops."""
import pytest
import torch

ops = pytest.importorskip('mmcv.ops')


def iou(a, b):
    """IoU of two (x1, y1, x2, y2) boxes, mmcv's convention (no +1 on widths)."""
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def naive_nms(boxes, scores, threshold):
    """Indices kept by greedy NMS, by decreasing score: drop a box whose IoU with a kept one
    exceeds ``threshold``."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept = []
    for i in order:
        if all(iou(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return kept


def test_nms_hand_example():
    boxes = torch.tensor([
        [0., 0., 10., 10.],   # 0: score .90
        [1., 1., 11., 11.],   # 1: .80, IoU with 0 = 81 / 119 = .68
        [0., 0., 10., 4.],    # 2: .70, IoU with 0 = 40 / 100 = .40
        [20., 20., 30., 30.],  # 3: .60, IoU with 4 = 90 / 110 = .82
        [21., 20., 31., 30.],  # 4: .95
    ])
    scores = torch.tensor([0.90, 0.80, 0.70, 0.60, 0.95])
    dets, keep = ops.nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [4, 0, 2]
    assert torch.equal(dets, torch.cat([boxes[[4, 0, 2]], scores[[4, 0, 2], None]], dim=1))
    # at 0.3 box 2 (IoU .40 with box 0) is suppressed too
    _, keep = ops.nms(boxes, scores, iou_threshold=0.3)
    assert keep.tolist() == [4, 0]


def test_nms_matches_naive_loop_on_random_boxes():
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(60, 2, generator=generator) * 50
    sizes = torch.rand(60, 2, generator=generator) * 20 + 1
    boxes = torch.cat([corners, corners + sizes], dim=1)
    scores = torch.rand(60, generator=generator)
    _, keep = ops.nms(boxes, scores, iou_threshold=0.4)
    assert keep.tolist() == naive_nms(boxes.tolist(), scores.tolist(), 0.4)


def bilinear(image, y, x):
    """Bilinear sample of a (H, W) image at (y, x) in pixel-index coordinates, with the
    RoIAlign border rule: 0 outside [-1, H] x [-1, W], clamped to the border inside it."""
    height, width = image.shape
    if y < -1 or y > height or x < -1 or x > width:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= height - 1:
        y0 = y1 = height - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= width - 1:
        x0 = x1 = width - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    dy, dx = y - y0, x - x0
    return ((1 - dy) * (1 - dx) * image[y0, x0] + (1 - dy) * dx * image[y0, x1]
            + dy * (1 - dx) * image[y1, x0] + dy * dx * image[y1, x1])


def naive_roi_align(image, roi, out_size, scale, ratio):
    """Aligned RoIAlign of one (H, W) channel: each bin averages ratio x ratio bilinear
    samples at the centres of a regular sub-grid; pixel centres at integer + 0.5."""
    x1, y1, x2, y2 = [v * scale - 0.5 for v in roi]
    bin_h, bin_w = (y2 - y1) / out_size, (x2 - x1) / out_size
    out = torch.zeros(out_size, out_size, dtype=torch.float64)
    for ph in range(out_size):
        for pw in range(out_size):
            total = 0.0
            for iy in range(ratio):
                for ix in range(ratio):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / ratio
                    x = x1 + pw * bin_w + (ix + 0.5) * bin_w / ratio
                    total += bilinear(image, y, x)
            out[ph, pw] = total / ratio ** 2
    return out


def test_roi_align_is_exact_on_a_linear_ramp():
    # f(row, col) = 3 col + 5 row + 1; bilinear sampling reproduces a linear function and the
    # mean over a bin's symmetric sample grid is f at the bin centre.
    rows, cols = torch.meshgrid(torch.arange(16.), torch.arange(20.), indexing='ij')
    image = (3 * cols + 5 * rows + 1)[None, None]
    roi = [2.0, 3.0, 14.0, 11.0]  # x1, y1, x2, y2 in input pixels (spatial_scale 1)
    out = ops.roi_align(image, torch.tensor([[0.0, *roi]]), (4, 4), 1.0, 0, 'avg', True)
    bin_w, bin_h = (roi[2] - roi[0]) / 4, (roi[3] - roi[1]) / 4
    for ph in range(4):
        for pw in range(4):
            col = roi[0] - 0.5 + (pw + 0.5) * bin_w
            row = roi[1] - 0.5 + (ph + 0.5) * bin_h
            assert out[0, 0, ph, pw].item() == pytest.approx(3 * col + 5 * row + 1, abs=1e-4)


def test_roi_align_matches_naive_loop():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 2, 9, 11, generator=generator)
    rois = torch.tensor([[0, 2.0, 1.0, 15.0, 12.0],    # inside, spatial scale 0.5
                         [0, 10.0, 8.0, 24.0, 19.0]])  # reaches past the right/bottom border
    out = ops.roi_align(image, rois, (3, 3), 0.5, 2, 'avg', True)
    module_out = ops.RoIAlign((3, 3), 0.5, 2, 'avg', True)(image, rois)
    assert torch.equal(out, module_out)
    for r, roi in enumerate(rois):
        for c in range(2):
            expected = naive_roi_align(image[0, c].double(), roi[1:].tolist(), 3, 0.5, 2)
            torch.testing.assert_close(out[r, c].double(), expected, atol=1e-5, rtol=0)


def test_nms_and_roi_align_run_in_float32_under_bf16_autocast():
    """Under bf16 autocast (localmim.AmpOptimWrapper, tools/train.py --amp) mmcv's kernels, which take
    no bf16, run on float32 copies: nms keeps what it keeps in float32, RoIAlign returns (and takes
    gradients) in its input's bf16, equal to the float32 op's rounded; outside autocast nothing
    changes."""
    from localmim.engine.amp import mmcv_ops_in_float32
    mmcv_ops_in_float32()
    mmcv_ops_in_float32()  # idempotent: wrapped once
    assert not hasattr(ops.roi_align.__wrapped__, 'in_float32_under_autocast')
    g = torch.Generator().manual_seed(0)
    corners = torch.rand(40, 2, generator=g) * 50
    boxes = torch.cat([corners, corners + 5 + torch.rand(40, 2, generator=g) * 20], 1).bfloat16()
    scores = torch.rand(40, generator=g).bfloat16()
    expected = naive_nms(boxes.float().tolist(), scores.float().tolist(), 0.5)
    with pytest.raises(RuntimeError, match='BFloat16'):  # mmcv alone
        ops.nms(boxes, scores, iou_threshold=0.5)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        _, keep = ops.nms(boxes, scores, iou_threshold=0.5)
        batched, _ = ops.batched_nms(boxes, scores, torch.zeros(40, dtype=torch.long), dict(iou_threshold=0.5))
    assert keep.tolist() == expected and len(batched) == len(expected)

    feats = torch.randn(2, 3, 16, 16, generator=g)
    rois = torch.tensor([[0., 1.5, 2., 9., 12.], [1., 0., 0., 15., 15.], [1., 4.2, 3.3, 7.7, 10.1]])
    layer = ops.RoIAlign((4, 4), 0.5, 2, 'avg', True)
    x32 = feats.bfloat16().float().requires_grad_()
    out32 = layer(x32, rois)
    out32.pow(2).sum().backward()
    x16 = feats.bfloat16().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out16 = layer(x16, rois)
        functional = ops.roi_align(x16, rois, (4, 4), 0.5, 2, 'avg', True)
    assert out16.dtype == functional.dtype == torch.bfloat16
    assert torch.equal(out16, out32.detach().bfloat16()) and torch.equal(functional, out16)
    out16.float().pow(2).sum().backward()
    assert x16.grad.dtype == torch.bfloat16
    assert torch.allclose(x16.grad.float(), x32.grad, rtol=2e-2, atol=2e-2)
    assert torch.equal(layer(feats, rois), ops.roi_align(feats, rois, (4, 4), 0.5, 2, 'avg', True))  # fp32
