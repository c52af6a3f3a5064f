"""The tiny per-scale decoder of LocalMIM.

One decoder serves one tapped encoder layer: it embeds the visible tokens, fills the masked
positions with a learned mask token, runs one small transformer block over the full grid with
fixed sin-cos positions, and maps the grid to the target's resolution and dimension.
Parameter names match the LocalMIM release (``embed``, ``mask_token``, ``pos_embed``, ``blocks``,
``norm``, ``pred``). The output layer is the release's: a 1x1 conv after the rescale head (ViT) or
a plain Linear on the tokens (Swin, whose stage grids already match the target grids).
"""
import torch
import torch.nn as nn

from .layers import Block, apply_rescale_tokens, init_transformer_weights, rescale_layers, sincos_pos_embed


class LocalDecoder(nn.Module):
    """Visible tokens of one tapped layer -> prediction on that scale's target grid.

    Args:
        in_dim: encoder width at the tap.
        grid_size: (h, w) token grid of the tap.
        out_dim: target dimension.
        scale: target grid / token grid (4, 2, 1 or 0.5).
        dim, depth, num_heads, mlp_ratio: decoder transformer (256, 1, 8, 4 for ViT).
        with_cls: the tokens start with a cls token (ViT), which gets a zero position slot.
        pred_layer: 'conv' (rescale head then a default-initialised 1x1 conv, the ViT release) or
            'linear' (a Linear on the tokens with xavier weight and zero bias, the Swin release;
            needs ``scale=1``).
    """

    def __init__(self, in_dim, grid_size, out_dim, scale=1, dim=256, depth=1, num_heads=8, mlp_ratio=4.,
                 with_cls=True, norm_eps=1e-6, pred_layer='conv'):
        super().__init__()
        if pred_layer not in ('conv', 'linear'):
            raise ValueError(f"decoder pred_layer must be 'conv' or 'linear', got {pred_layer!r}")
        if pred_layer == 'linear' and scale != 1:
            raise ValueError(f"decoder pred_layer='linear' predicts on the token grid; it cannot rescale "
                             f"by {scale} (use 'conv')")
        self.grid_size, self.with_cls, self.scale = tuple(grid_size), with_cls, scale
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos = sincos_pos_embed(dim, self.grid_size, with_cls=with_cls)[None]
        self.pos_embed = nn.Parameter(pos, requires_grad=False)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, qkv_bias=True, norm_eps=norm_eps)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        if pred_layer == 'linear':
            self.pred = nn.Linear(dim, out_dim)
        else:
            layers, hidden = rescale_layers(dim, scale, pool='avg')
            self.pred = nn.Sequential(*layers, nn.Conv2d(hidden, out_dim, 1))
        self.apply(init_transformer_weights)  # Linear layers (pred too when 'linear'): xavier, zero bias
        nn.init.normal_(self.mask_token, std=.02)

    def no_weight_decay(self):
        return {'mask_token', 'pos_embed'}

    def forward(self, tokens, visible_index, query_index=None):
        """tokens: [B, (1+)N_vis, in_dim]; visible_index: [B, N_vis] raster positions of the
        visible tokens in the grid. Returns [B, out_dim, h*scale, w*scale] (a channels-first view
        of channels-last memory).

        With ``query_index`` [B, n] (grid positions, ``scale >= 1``): only those tokens' cells,
        [B, n, scale**2, out_dim] (each token's scale x scale cells in raster order). Every token
        still serves as key and value, so the values equal the full prediction's there; the last
        block's queries, MLP and the rescale head run on the n tokens only.
        """
        x = self.grid_tokens(tokens, visible_index)
        if query_index is not None:
            return self.predict_at(x, query_index)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        if self.with_cls:
            x = x[:, 1:]
        # channels-last all the way (the rescale head as per-cell Linears); a channels-first view out
        B, _, D = x.shape
        grid = x.reshape(B, *self.grid_size, D)
        out = self.pred(grid) if isinstance(self.pred, nn.Linear) else apply_rescale_tokens(grid, self.pred)
        return out.permute(0, 3, 1, 2)

    def predict_at(self, x, query_index):
        """Grid tokens x [B, (1+)h*w, dim] -> predictions [B, n, scale**2, out_dim] at the grid
        positions ``query_index`` [B, n]."""
        if self.scale < 1:
            raise ValueError(f'a decoder that pools (scale {self.scale}) predicts every cell from several '
                             f'tokens; it cannot predict at single tokens')
        for block in self.blocks[:-1]:
            x = block(x)
        x = self.norm(self.blocks[-1].forward_at(x, query_index + int(self.with_cls)))
        B, n, D = x.shape
        if isinstance(self.pred, nn.Linear):
            return self.pred(x)[:, :, None]
        cells = apply_rescale_tokens(x.reshape(B * n, 1, 1, D), self.pred)  # [B*n, s, s, out_dim]
        return cells.reshape(B, n, -1, cells.shape[-1])

    def grid_tokens(self, tokens, visible_index):
        """Visible tokens [B, (1+)N_vis, in_dim] -> the decoder's input [B, (1+)h*w, dim]: embedded,
        mask tokens at the other positions, positions added."""
        x = self.embed(tokens)
        cls, x = (x[:, :1], x[:, 1:]) if self.with_cls else (None, x)
        B, _, D = x.shape
        h, w = self.grid_size
        full = self.mask_token.to(x.dtype).expand(B, h * w, D)
        full = full.scatter(1, visible_index[..., None].expand(-1, -1, D), x)
        if cls is not None:
            full = torch.cat([cls, full], dim=1)
        return full + self.pos_embed
