"""A tiny CPU config for tests and smoke runs: R3D-50 topology at width 1/16, 4 frames of 32x32,
batch 4 videos (8 clips), a small head; synthetic input unless data.sources is set.

    cvrl-fast pretrain --config tiny_cpu --workdir runs/tiny [--config.data.sources=DIR]
"""
from cvrl_fast.configs import base


def get_config():
    cfg = base.get_config()
    cfg.model.width_multiplier = 0.0625
    cfg.model.head_hidden_dim = 64
    cfg.model.head_output_dim = 32
    cfg.data.num_frames = 4
    cfg.data.image_size = 32
    cfg.data.synthetic_videos = 64  # without data.sources; with them, an epoch is the videos found
    cfg.train.global_batch_size = 4
    cfg.train.epochs = 1.0
    cfg.train.warmup_epochs = 0.25
    cfg.train.base_learning_rate = 0.32
    cfg.checkpoint.every_steps = 4
    cfg.log.every_steps = 1
    cfg.log.progress_bar = False
    return cfg
