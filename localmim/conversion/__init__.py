"""Checkpoint conversion between the LocalMIM release, MAE/timm and this toolkit.

Pure functions (checkpoint in, ``(state_dict, report)`` out); ``tools/convert_checkpoint.py`` is the CLI.
"""
from .common import detect_format, new_report, print_report, unwrap_state_dict
from .architecture import architecture_from_config_text, backbone_architecture, timm_create_model_call
from .release import convert_release_swin_pretrain, convert_release_vit_pretrain
from .swin import convert_localmim_swin_pretrain, convert_release_swin, convert_timm_swin, export_timm_swin
from .vit import convert_localmim_pretrain, convert_release_vit, convert_timm_vit, export_timm_vit

__all__ = ['detect_format', 'new_report', 'print_report', 'unwrap_state_dict', 'convert_release_vit_pretrain',
           'convert_release_swin_pretrain',
           'convert_localmim_pretrain', 'convert_release_vit', 'convert_timm_vit', 'export_timm_vit',
           'convert_localmim_swin_pretrain', 'convert_release_swin', 'convert_timm_swin', 'export_timm_swin',
           'architecture_from_config_text', 'backbone_architecture', 'timm_create_model_call']
