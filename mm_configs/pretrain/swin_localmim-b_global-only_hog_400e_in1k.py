# Global-only single-scale baseline (SimMIM/GreenMIM-style) beside swin_localmim-b_hog_400e_in1k.py:
# the last stage alone (1024-d @ 7x7) predicts HOG at 32 px cells through the same tiny decoder
# (width 128, one block, Linear output); everything else identical.
_base_ = './swin_localmim-b_hog_400e_in1k.py'
model = dict(taps=[3], target=dict(cell_sizes=(32,)), decoder=dict(dims=(128,)))
