# Global-only single-scale baseline (MAE-style) beside localmim_vit-h_800e_in1k.py: the top block alone predicts
# HOG at the patch scale (14 px) through the same tiny decoder; everything else identical.
_base_ = './localmim_vit-h_800e_in1k.py'
model = dict(taps=[31], target=dict(cell_sizes=(14,)))
