"""The pretraining step: compiled without graph breaks, free of host reads, masks from the pipeline."""
import traceback
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.structures import BaseDataElement

from localmim.datasets.masking import RandomMaskGenerator, num_visible_cells
from localmim.datasets.transforms import PackInputs
from localmim.models.localmim import LocalMIM
from localmim.registry import build_model
from localmim.seeding import seed_all

PREPROCESSOR = dict(type='ImgDataPreprocessor', mean=[127.5] * 3, std=[64.] * 3)


def tiny_vit(**kw):
    torch.manual_seed(0)
    return build_model(dict(
        type='LocalMIM', data_preprocessor=PREPROCESSOR,
        encoder=dict(type='VisionTransformer', arch=None, img_size=32, patch_size=4, embed_dim=32, depth=4,
                     num_heads=2, final_norm=False),
        taps=[0, 1, 2, 3], target=dict(type='HOGTarget', nbins=9, cell_sizes=(1, 2, 4, 8)),
        decoder=dict(dims=16, num_heads=2), **kw))


def tiny_swin(**encoder):
    torch.manual_seed(0)
    cfg = tiny_swin_cfg()
    cfg['encoder'].update(encoder)
    return build_model(cfg)


# 3x3 mask units of 8/4/2/1 tokens under windows of 3: the tight packing varies with the mask
CUT_WINDOWS = dict(img_size=96, window_size=3)


def tiny_swin_cfg():
    return dict(
        type='LocalMIM', data_preprocessor=PREPROCESSOR,
        encoder=dict(type='SwinTransformer', arch=None, img_size=64, embed_dim=16, depths=(2, 2, 2, 2),
                     num_heads=(1, 2, 4, 8), window_size=4, final_norm=False),
        taps=[0, 1, 2, 3], target=dict(type='HOGTarget', nbins=18, cell_sizes=(8, 16, 32, 32), bias='per_scale'),
        decoder=dict(dims=(16, 32, 32, 32), num_heads=2, pred_layer='linear'),
        mask_ratio=0.75, mask_unit=32, mask_per_sample=False)


def test_swin_needs_one_mask_per_batch():
    with pytest.raises(ValueError, match='one mask per batch: set mask_per_sample=False'):
        build_model(dict(tiny_swin_cfg(), mask_per_sample=True))


def loader_batch(model, batch=2, seed=0):
    """A batch as the pretraining pipeline delivers it: uint8 images, masks drawn per sample by
    ``RandomMaskGenerator`` and packed by ``PackInputs``."""
    size = model.encoder.img_size
    generate = RandomMaskGenerator(size, model.mask_unit, model.mask_ratio)
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(batch):
        seed_all(seed + i)
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        samples.append(PackInputs()(generate(dict(img=img))))
    return dict(inputs=[s['inputs'] for s in samples], data_samples=[s['data_samples'] for s in samples])


def test_mask_generator_counts_and_repeats_under_a_seed():
    generate = RandomMaskGenerator(224, 16, 0.75)
    seed_all(3)
    a = generate(dict())['mask']
    seed_all(3)
    b = generate(dict())['mask']
    c = generate(dict())['mask']
    assert a.shape == (14, 14) and a.dtype == bool and (~a).sum() == num_visible_cells(196, 0.75) == 49
    assert np.array_equal(a, b) and not np.array_equal(b, c)
    # packed as metainfo: a data preprocessor moving the sample to a device leaves it on the host
    packed = PackInputs()(dict(img=np.zeros((224, 224, 3), np.uint8), mask=a))['data_samples']
    assert 'mask' in packed.metainfo_keys() and 'mask' not in packed.keys()


@pytest.mark.parametrize('make', [tiny_vit, tiny_swin], ids=['vit', 'swin'])
def test_pipeline_masks_are_the_ones_trained(make):
    model = make()
    data = model.data_preprocessor(loader_batch(model, batch=3), True)
    mask = model.get_mask(data['inputs'], data['data_samples'])
    first = torch.as_tensor(data['data_samples'][0].mask)
    expected = torch.stack([torch.as_tensor(s.mask) for s in data['data_samples']]) if model.mask_per_sample \
        else first.expand(3, -1, -1)  # one mask per batch: the first sample's
    assert torch.equal(mask, expected)
    if not model.mask_per_sample:
        return
    # samples leaving different numbers of cells visible (16 of 64, and all) are refused on the host
    data['data_samples'][0].set_metainfo(dict(mask=torch.zeros_like(first)))
    with pytest.raises(ValueError, match=r'same number of cells, got visible counts \[16, 64\]'):
        model.loss(data['inputs'], data['data_samples'])


FORBIDDEN = ('item', 'cpu', 'tolist', 'nonzero', '__bool__', '__int__', '__float__')


class HostReads:
    """Records every call of a host-reading Tensor method (and where it was made) while active."""

    def __init__(self):
        self.calls, self.saved = [], {}

    def __enter__(self):
        for name in FORBIDDEN:
            original = self.saved[name] = getattr(torch.Tensor, name)

            def record(tensor, *args, _name=name, _original=original, **kwargs):
                self.calls.append((_name, traceback.extract_stack(limit=2)[0].name))
                return _original(tensor, *args, **kwargs)
            setattr(torch.Tensor, name, record)
        return self

    def __exit__(self, *exc):
        for name, original in self.saved.items():
            setattr(torch.Tensor, name, original)


@pytest.mark.parametrize('make', [tiny_vit, tiny_swin], ids=['vit', 'swin'])
@pytest.mark.parametrize('with_masks', [True, False], ids=['pipeline-mask', 'random-mask'])
def test_training_step_reads_the_device_once_in_the_guard(make, with_masks):
    model = make().train()
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    data = loader_batch(model)
    if not with_masks:
        for s in data['data_samples']:
            del s.mask
    before = [p.detach().clone() for p in model.parameters()]
    with HostReads() as reads:
        log = model.train_step(data, optim)
    # Host-side reads that are no device sync: mmengine's stack_batch compares the images' sizes
    # (a host tensor) and AdamW's step counter is a host tensor (except fused/capturable on CUDA).
    host_side = {('__bool__', 'stack_batch'), ('item', '_get_value')}
    # forward, loss, backward and step read nothing back; the non-finite guard reads once
    assert [call for call in reads.calls if call not in host_side] == [('tolist', 'read_on_host')]
    assert all(torch.isfinite(v) for v in log.values())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('make', [tiny_vit, tiny_swin], ids=['vit', 'swin'])
def test_cuda_training_step_syncs_only_in_the_guard(make):
    """On a GPU, CUDA's own sync detector: any synchronising call (a host read, a blocking copy, a
    data-dependent shape) in data preprocessing, forward, loss, backward or fused AdamW raises."""
    model = make().cuda().train()
    model.data_preprocessor._non_blocking = True  # as the shipped configs' non_blocking=True
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True))
    data = loader_batch(model)
    model.train_step(data, optim)  # warm-up: lazy CUDA initialisation may synchronise
    torch.cuda.synchronize()
    before = [p.detach().clone() for p in model.parameters()]
    torch.cuda.set_sync_debug_mode('error')
    try:
        log = model.train_step(loader_batch(model, seed=1), optim)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(torch.isfinite(v) for v in log.values())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.parametrize('make', [tiny_vit, tiny_swin], ids=['vit', 'swin'])
def test_attention_inputs_suit_the_fused_kernels(make, monkeypatch):
    """What the fused SDPA kernels require of their inputs, checked on CPU for every attention of a
    bf16 step: q, k, v and the bias share the dtype and have a last stride of 1 (a strided bias, as
    Swin's table lookup once gave, silently sends CUDA to the slow math kernel)."""
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        calls.append((q, k, v, attn_mask))
        return sdpa(q, k, v, attn_mask=attn_mask, **kw)
    monkeypatch.setattr(torch.nn.functional, 'scaled_dot_product_attention', spy)
    model = make().train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model.loss(torch.randn(2, 3, model.encoder.img_size, model.encoder.img_size))
    assert calls and any(mask is not None for *_, mask in calls) == (make is tiny_swin)
    for q, k, v, mask in calls:
        tensors = [q, k, v] + ([mask] if mask is not None else [])
        assert all(t.dtype == torch.bfloat16 and t.stride(-1) == 1 for t in tensors), \
            [(tuple(t.shape), t.dtype, t.stride()) for t in tensors]


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('make,kernel', [(tiny_vit, 'FLASH_ATTENTION'), (tiny_swin, 'EFFICIENT_ATTENTION')],
                         ids=['vit-flash', 'swin-efficient'])
def test_cuda_bf16_step_runs_on_fused_attention_kernels(make, kernel):
    """Every attention of the step (encoder and decoders) is eligible for the fused SDPA kernel:
    restricted to it alone, forward and backward still run (ViT: flash; Swin's relative position
    bias needs the memory-efficient kernel)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    model = make().cuda().train()
    images = torch.randn(2, 3, model.encoder.img_size, model.encoder.img_size, device='cuda')
    with sdpa_kernel(getattr(SDPBackend, kernel)), torch.autocast('cuda', dtype=torch.bfloat16):
        loss = sum(model.loss(images).values())
    loss.backward()
    assert torch.isfinite(loss)


def test_vit_step_compiles_without_graph_breaks_and_matches_eager():
    model = tiny_vit().train()
    images = torch.randn(2, 3, 32, 32)
    mask, num_visible, plans = model.prepare_mask(images)
    explained = torch._dynamo.explain(LocalMIM.masked_loss)(model, images, mask, num_visible, plans)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    torch._dynamo.reset()
    # compile=...: the model's option; aot_eager traces forward and backward through AOTAutograd
    # (inductor's C++ build of even this tiny model takes minutes on 2 cores)
    compiled = tiny_vit(compile=dict(backend='aot_eager')).train()
    samples = [type(s)(metainfo=dict(mask=m)) for s, m in zip(loader_batch(model)['data_samples'], mask)]
    eager_losses, compiled_losses = model.loss(images, samples), compiled.loss(images, samples)
    sum(eager_losses.values()).backward()
    sum(compiled_losses.values()).backward()
    for name in eager_losses:
        torch.testing.assert_close(compiled_losses[name], eager_losses[name], rtol=1e-5, atol=1e-5)
    for (name, p), q in zip(model.named_parameters(), compiled.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
    torch._dynamo.reset()


class ParamsOn:
    """A stand-in model whose parameters report being on CUDA or not (no GPU here)."""

    def __init__(self, cuda):
        self.cuda = cuda

    def parameters(self):
        return iter([SimpleNamespace(is_cuda=self.cuda)] * 2)


def test_adamw_is_fused_on_cuda_only():
    from localmim.engine.optim_constructor import with_fused_kernel
    adamw = dict(type='AdamW', lr=1e-3)
    assert with_fused_kernel(adamw, ParamsOn(cuda=True)) == dict(adamw, fused=True)
    assert with_fused_kernel(adamw, ParamsOn(cuda=False)) == adamw
    assert with_fused_kernel(dict(adamw, fused=False), ParamsOn(cuda=True)) == dict(adamw, fused=False)
    assert with_fused_kernel(dict(type='SGD', lr=1), ParamsOn(cuda=True)) == dict(type='SGD', lr=1)
    # on CPU the shipped recipe's optimizer is built as before (torch's default, foreach)
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile('mm_configs/_base_/schedules/pretrain_adamw.py').optim_wrapper
    cfg.type = 'OptimWrapper'
    with DefaultScope.overwrite_default_scope('localmim'):
        optimizer = build_optim_wrapper(tiny_vit(), cfg).optimizer
    assert isinstance(optimizer, torch.optim.AdamW) and not optimizer.defaults['fused']


@pytest.mark.parametrize('scale,pool', [(4, 'avg'), (2, 'avg'), (1, 'avg'), (0.5, 'avg'), (0.5, 'max')])
def test_channels_last_rescale_head_is_the_convolutions(scale, pool):
    from localmim.models.layers import apply_rescale_tokens, rescale_layers
    torch.manual_seed(0)
    layers, channels = rescale_layers(32, scale, pool=pool)
    head = torch.nn.Sequential(*layers, torch.nn.Conv2d(channels, 5, 1))
    for p in head.parameters():  # non-trivial norm weights and biases
        torch.nn.init.normal_(p, std=0.5)
    grid = torch.randn(2, 6, 4, 32, requires_grad=True)
    expected = head(grid.permute(0, 3, 1, 2))
    got = apply_rescale_tokens(grid, head).permute(0, 3, 1, 2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    g_expected, = torch.autograd.grad(expected.square().sum(), grid)
    g_got, = torch.autograd.grad(got.square().sum(), grid)
    torch.testing.assert_close(g_got, g_expected, rtol=1e-4, atol=1e-5)


def test_swin_step_traces_as_one_graph_with_plans_made_ahead():
    model = tiny_swin().train()
    images = torch.randn(2, 3, 64, 64)
    explained = torch._dynamo.explain(LocalMIM.masked_loss)(model, images, *model.prepare_mask(images))
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    torch._dynamo.reset()


def unit_masks(visible_sets, cells=9, batch=2):
    """Per visible set, a batch of data samples holding its host mask on a 3x3 unit grid, as
    ``PackInputs`` packs them."""
    masks = []
    for visible in visible_sets:
        mask = np.ones(cells, dtype=bool)
        mask[list(visible)] = False
        masks.append([BaseDataElement(metainfo=dict(mask=mask.reshape(3, 3))) for _ in range(batch)])
    return masks


def window_shapes(plans):
    return [(w.bins, w.size, w.attend is None) for plan in plans for w in plan.windows]


def test_swin_static_plans_give_the_tight_packings_losses_and_gradients():
    """Static plans (bins fixed by the visible count, padded) give the losses and parameter
    gradients of plans packed as tightly as each mask allows (static=False, shapes vary)."""
    model = tiny_swin(**CUT_WINDOWS).train()
    torch.manual_seed(1)
    images = torch.randn(2, 3, 96, 96)
    params = [p for p in model.parameters() if p.requires_grad]
    static_shapes, tight_shapes = set(), set()
    for samples in unit_masks([(0, 1), (2, 6), (4, 8), (5, 7)]):
        mask, num_visible, tight = model.prepare_mask(images, samples)  # eager: tight packing
        static = model.encoder.mask_plans((24, 24), mask[:1], model.taps)  # static=True, as compiled
        static_shapes.add(tuple(window_shapes(static)))
        tight_shapes.add(tuple(window_shapes(tight)))
        runs = []
        for plans in (static, tight):
            losses = model.masked_loss(images, mask, num_visible, plans)
            runs.append((losses, torch.autograd.grad(sum(losses.values()), params, allow_unused=True)))
        (losses, grads), (expected, expected_grads) = runs
        for name in expected:
            torch.testing.assert_close(losses[name], expected[name], rtol=1e-5, atol=1e-6)
        for (name, _), a, b in zip(model.named_parameters(), grads, expected_grads):
            assert (a is None) == (b is None), name
            if b is not None:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
    assert len(static_shapes) == 1 and len(tight_shapes) == 4  # padding hid real differences


def test_swin_step_compiles_once_for_masks_of_one_visible_count():
    """The compiled step (LocalMIM.masked_loss) meets masks with the same number of visible units
    at different places without recompiling: the plans' shapes depend on the count only."""
    graphs = []

    def counting_backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward
    model = tiny_swin(**CUT_WINDOWS).train()
    model.compile_options = dict(backend=counting_backend)  # the model's own compile option
    images = torch.randn(2, 3, 96, 96)
    torch._dynamo.reset()
    for samples in unit_masks([(0, 1), (2, 6), (4, 8)]):
        model.loss(images, samples)
    torch._dynamo.reset()
    assert len(graphs) == 1


@pytest.mark.parametrize('shared', [False, True], ids=['per-image', 'shared'])
def test_patch_embedding_of_selected_patches_is_the_convolution(shared):
    """Embedding only the kept patches (a GEMM on flattened patches) gives the convolution's
    tokens at those positions, and the same weight gradients."""
    from localmim.models.layers import PatchEmbed
    torch.manual_seed(0)
    embed = PatchEmbed(patch_size=4, in_chans=3, embed_dim=8, norm=True)
    images = torch.randn(3, 3, 16, 24)
    index = torch.tensor([1, 5, 6, 20]) if shared else torch.stack([torch.randperm(24)[:5] for _ in range(3)])
    conv = embed.proj(images).flatten(2).transpose(1, 2)  # [B, 24, 8]
    expected = conv[:, index] if shared else torch.stack([conv[b, index[b]] for b in range(3)])
    expected = embed.norm(expected)
    got = embed(images, index)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    weights = torch.randn_like(got)
    g_expected = torch.autograd.grad((expected * weights).sum(), list(embed.parameters()))
    g_got = torch.autograd.grad((got * weights).sum(), list(embed.parameters()))
    for a, b in zip(g_got, g_expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_cuda_graph_mode_refuses_gradient_accumulation():
    """CUDA-graph replays reuse their outputs, gradients too, so accumulating them is refused."""
    model = tiny_vit(compile='reduce-overhead').train()  # a mode name, as --cfg-options gives it
    assert model.compile_options == dict(mode='reduce-overhead') and model.uses_cuda_graphs
    assert not tiny_vit(compile=True).uses_cuda_graphs
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), accumulative_counts=2)
    with pytest.raises(ValueError, match="mode 'reduce-overhead' replays CUDA graphs.*accumulative_counts=2"):
        model.guarded_update(dict(loss=torch.ones((), requires_grad=True)), optim)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_graph_training_steps_match_eager():
    """compile=dict(mode='reduce-overhead'): three SGD steps replayed as CUDA graphs give the
    eager run's losses and weights (SGD: an update proportional to the gradient, so rounding
    differences stay small), and no graph was skipped."""
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    runs = []
    for options in (None, dict(mode='reduce-overhead')):
        model = tiny_vit(compile=options or False).cuda().train()
        optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
        logs = [model.train_step(loader_batch(model, seed=s), optim) for s in range(3)]
        runs.append(([float(log['loss']) for log in logs], [p.detach().clone() for p in model.parameters()]))
    (eager_losses, eager_weights), (graph_losses, graph_weights) = runs
    assert counters['inductor']['cudagraph_skips'] == 0, dict(counters['inductor'])
    torch.testing.assert_close(graph_losses, eager_losses, rtol=1e-4, atol=1e-6)
    for a, b in zip(graph_weights, eager_weights):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    torch._dynamo.reset()


@pytest.mark.parametrize('make', [tiny_vit, tiny_swin], ids=['vit', 'swin'])
def test_predicting_masked_cells_only_gives_the_full_predictions_loss(make):
    """masked_loss (decoders of scale >= 1 predict the masked tokens' cells only) equals the loss of
    the full-grid predictions (forward_loss of forward_decoders), values and gradients."""
    model = make().train()
    images = torch.randn(2, 3, model.encoder.img_size, model.encoder.img_size)
    mask, num_visible, plans = model.prepare_mask(images)
    targets = model.compute_targets(images)
    full = model.forward_loss(model.forward_decoders(model.forward_encoder(images, mask, num_visible, plans), mask,
                                                     num_visible), targets, mask)
    fast = model.masked_loss(images, mask, num_visible, plans)
    assert any(d.scale >= 1 for d in model.decoders)
    params = [p for p in model.parameters() if p.requires_grad]
    g_full = torch.autograd.grad(sum(full.values()), params, allow_unused=True)
    g_fast = torch.autograd.grad(sum(fast.values()), params, allow_unused=True)
    for name in full:
        torch.testing.assert_close(fast[name], full[name], rtol=1e-5, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), g_fast, g_full):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
