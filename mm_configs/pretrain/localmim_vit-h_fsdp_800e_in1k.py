# localmim_vit-h_800e_in1k.py with its parameters, gradients and AdamW state sharded over the GPUs
# (FSDP): mmengine's FlexibleRunner with FSDPStrategy. Each transformer-sized chunk (>= 10M
# parameters) is its own FSDP unit; LocalMIM's non-finite guard runs through
# localmim.GuardedFullyShardedDataParallel. Launch as any config: tools/dist_train.sh CONFIG 8.
# FlexibleRunner writes mmengine's own (non-atomic, pickled) checkpoints; see README "Multi-GPU".
_base_ = './localmim_vit-h_800e_in1k.py'
runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        type='localmim.GuardedFullyShardedDataParallel',
        use_orig_params=True,  # parameter names stay those of the model (weight-decay groups)
        auto_wrap_policy=dict(type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy',
                              min_num_params=int(1e7))))
optim_wrapper = dict(use_fsdp=True)  # FSDP's sharded loss scaler when the dtype is fp16
