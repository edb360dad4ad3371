"""The `make demo` job: CVRL pretraining of a small R3D on the embedded motion dataset, 2 CPU cores.

    cvrl-fast demo [--workdir demo_work] [--quick]

Same code path as the real model (the R3D backbone, the C++ pair loader with the full CVRL augmentation,
the trainer, the NT-Xent loss, linear evaluation), at a size a 2-core machine trains in minutes: R3D-18 at
1/4 width, 8-frame clips at stride 2, 64x64 crops, 16 videos per step, 300 steps. Two small-scale choices
differ from the K400 recipe, both measured on this data:
  - R3D-18 instead of R3D-50: at 1/8 width the 50-layer bottleneck net (2-8 channel inner convs) does not
    even learn the motion classes SUPERVISED in 60 steps (loss stays at ln 4), R3D-18 at 1/4 width
    reaches 77% held-out in the same 60 steps;
  - Adam (lr 1e-3) instead of SGD: a fresh deep BN net at batch 16 has stem gradients ~1000x its weight
    norm, so SGD at any useful lr blows the early layers up and the loss stalls at its uninformative level.
Measured 2026-11-26 on the 2-core machine: `pretrained top-1 30.0% vs random-init top-1 26.2% on 80
held-out videos in 9.0 min` (4 classes; one video is 1.25 points). The target of a 10-point gap is NOT
met yet: in 300 steps the contrastive loss only dips below its uninformative level (2 ln 31 = 6.87), and
weaker augmentation lowers the loss but makes the probe worse (appearance shortcuts).
"""
from cvrl_fast.configs import Config, base


def get_config() -> Config:
    cfg = base.get_config()
    cfg.model.depth = 18
    cfg.model.width_multiplier = 0.25
    cfg.model.head_hidden_dim = 256
    cfg.model.head_output_dim = 64
    cfg.data.source = "videos"
    cfg.data.num_frames = 8
    cfg.data.frame_stride = 2
    cfg.data.image_size = 64
    cfg.data.num_train_videos = 240
    cfg.train.global_batch_size = 16
    cfg.train.epochs = 20.0
    cfg.train.warmup_epochs = 1.0
    cfg.train.optimizer = "adam"
    cfg.train.base_learning_rate = 1e-3
    cfg.train.base_batch_size = 16
    cfg.checkpoint.every_steps = 100
    cfg.log.every_steps = 5
    cfg.log.progress_bar = True
    return Config({
        "pretrain": cfg.to_dict(),
        "dataset": {"num_train": 240, "num_val": 80, "size": 64, "num_frames": 75, "seed": 0,
                    "segment_frames": 0, "look_pool": 0},
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
