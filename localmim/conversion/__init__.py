"""Pure checkpoint conversions (state dict in, (state dict, report) out)."""
from .vit import convert_localmim_pretrain, convert_release_vit, convert_timm_vit, export_timm_vit

__all__ = ['convert_localmim_pretrain', 'convert_release_vit', 'convert_timm_vit', 'export_timm_vit']
