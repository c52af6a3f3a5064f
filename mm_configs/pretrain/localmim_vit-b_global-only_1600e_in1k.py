# Global-only single-scale baseline (MAE-style) beside localmim_vit-b_1600e_in1k.py: the top block alone predicts
# HOG at the patch scale (16 px) through the same tiny decoder; everything else identical.
_base_ = './localmim_vit-b_1600e_in1k.py'
model = dict(taps=[11], target=dict(cell_sizes=(16,)))
