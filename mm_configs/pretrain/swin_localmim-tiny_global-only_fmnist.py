# Global-only baseline beside swin_localmim-tiny_fmnist.py: the last stage (256-d @ 2x2) predicts HOG
# at 32 px cells.
_base_ = './swin_localmim-tiny_fmnist.py'
model = dict(taps=[3], target=dict(cell_sizes=(32,)), decoder=dict(dims=(64,)))
