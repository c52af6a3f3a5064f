# LocalMIM Swin-B with the normalised-pixel target (per-patch mean and unbiased variance, eps 1e-6;
# 8, 16, 32, 32 px patches -> 192, 768, 3072, 3072 dims); everything else as the HOG recipe.
_base_ = './swin_localmim-b_hog_400e_in1k.py'
model = dict(target=dict(_delete_=True, type='PixelTarget', cell_sizes=(8, 16, 32, 32)))
