"""The `make demo` job: CVRL pretraining of a small R3D on the embedded motion dataset, 2 CPU cores.

    cvrl-fast demo [--workdir demo_work] [--quick]

Same code path as the real model (R3D-50 topology at 1/8 width, the C++ pair loader, the trainer, the
NT-Xent loss, linear evaluation), at a size a 2-core machine trains in minutes: 8-frame clips at stride 2,
64x64 crops, 16 videos per step. Expect the pretrained backbone's linear probe to beat the same backbone
at random initialisation by well over 10 points of top-1 on the held-out split (the demo prints both).
"""
from cvrl_fast.configs import Config, base


def get_config() -> Config:
    cfg = base.get_config()
    cfg.model.width_multiplier = 0.125
    cfg.model.head_hidden_dim = 256
    cfg.model.head_output_dim = 64
    cfg.data.source = "videos"
    cfg.data.num_frames = 8
    cfg.data.frame_stride = 2
    cfg.data.image_size = 64
    cfg.data.num_train_videos = 240
    cfg.train.global_batch_size = 16
    cfg.train.epochs = 10.0
    cfg.train.warmup_epochs = 1.0
    cfg.train.base_learning_rate = 0.2
    cfg.train.base_batch_size = 16
    cfg.checkpoint.every_steps = 100
    cfg.log.every_steps = 5
    cfg.log.progress_bar = True
    return Config({
        "pretrain": cfg.to_dict(),
        "dataset": {"num_train": 240, "num_val": 80, "size": 64, "num_frames": 75, "seed": 0,
                    "segment_frames": 0, "num_objects": 1},
        "eval": {                      # overrides of the linear_eval config, scaled to the demo data
            "clip_frames": 8,
            "crop_size": 64,
            "test_short_side": 64,
            "test_crop_size": 64,
            "num_test_clips": 4,
            "batch_size": 32,
            "base_batch_size": 1024,
            "learning_rate": 32.0,
            "epochs": 60.0,
            "warmup_epochs": 3.0,
            "train_views": 4,
            "batch_clips": 32,
        },
    })
