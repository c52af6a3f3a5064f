# Global-only baseline beside localmim_vit-tiny_fmnist.py: the top block predicts HOG at 8 px.
_base_ = './localmim_vit-tiny_fmnist.py'
model = dict(taps=[7], target=dict(cell_sizes=(8,)))
