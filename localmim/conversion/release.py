"""Import the LocalMIM release's ViT pretraining checkpoint into :class:`localmim.LocalMIM`.

Release keys ({'model': state_dict}): encoder params at the top level (``cls_token``, ``pos_embed``,
``patch_embed.*``, ``blocks.*``), ``norm.{i}`` (one LayerNorm per tap), ``decoder.{i}.*`` (same
layout as our :class:`LocalDecoder`) and ``hog_enc.{i}.conv.{weight,bias}`` (fixed Sobel kernels,
optional frozen bias, one HOG module per scale). Ours: ``encoder.*``, ``tap_norms.{i}``,
``decoders.{i}``, ``target.bias`` ([1, 2] shared or [num_scales, 2] per scale).
"""
import torch

from ..models.targets import SOBEL
from .common import new_report, unwrap_state_dict


def convert_release_vit_pretrain(checkpoint):
    """Release ViT pretraining checkpoint -> LocalMIM state dict (for ``load_from``).

    ``report['hog_bias']`` says which ``HOGTarget(bias=...)`` the pretraining config needs.
    """
    state = unwrap_state_dict(checkpoint)
    out, report = {}, new_report()
    biases = {}
    for key, value in state.items():
        head, _, rest = key.partition('.')
        if head in ('cls_token', 'pos_embed', 'patch_embed', 'blocks'):
            out[f'encoder.{key}'] = value
        elif head == 'norm':
            out[f'tap_norms.{rest}'] = value
        elif head == 'decoder':
            out[f'decoders.{rest}'] = value
        elif head == 'hog_enc':
            index, name = rest.split('.', 1)
            if name == 'conv.weight':
                expected = torch.stack([SOBEL, SOBEL.t()])[:, None]
                if not torch.allclose(value.float(), expected):
                    raise ValueError(f'{key} is not the fixed Sobel kernel pair; refusing to import')
                report['dropped'].append(key)  # fixed, rebuilt by HOGTarget
                continue
            if name == 'conv.bias':
                biases[int(index)] = value.float()
                report['converted'].append(key)
                continue
            report['dropped'].append(key)
            continue
        else:
            report['dropped'].append(key)
            continue
        report['loaded'].append(key)
    if biases:
        stacked = torch.stack([biases[i] for i in sorted(biases)])
        same = all(torch.equal(stacked[0], b) for b in stacked)
        out['target.bias'] = stacked[:1] if same else stacked
        report['hog_bias'] = 'shared' if same else 'per_scale'
    return out, report
