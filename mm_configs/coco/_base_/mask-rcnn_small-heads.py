# mmdet's Mask R-CNN with 64-channel pyramid/heads and fewer proposals and RoIs, for 128 px
# canvases on a CPU; the 10 Fashion-MNIST classes. Backbone and neck come from the config.
# Test score threshold 0.001 instead of 0.05: short CPU runs still give COCO AP a ranked list.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
channels = 64
model = dict(
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(in_channels=channels, fc_out_channels=256, num_classes=10),
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(in_channels=channels, conv_out_channels=channels, num_classes=10)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(score_thr=0.001, max_per_img=50)))
