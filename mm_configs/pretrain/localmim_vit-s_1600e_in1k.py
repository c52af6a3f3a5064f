# LocalMIM ViT-S/16 with the ViT-B recipe (the release gives no separate ViT-S recipe).
_base_ = './localmim_vit-b_1600e_in1k.py'
model = dict(encoder=dict(arch='small'))
