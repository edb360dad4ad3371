"""Linear evaluation of a CVRL backbone with the reference recipe (cvrl.md §6.1).

    cvrl-fast linear-eval --backbone RUN --train train.csv --val val.csv --workdir DIR \
        [--config linear_eval] [--config.eval.epochs=100 ...]

--backbone is a pretrain workdir, a training checkpoint (RUN/checkpoints/ckpt-N) or an official backbone
checkpoint prefix; the backbone's depth and width are read from it (cvrl_fast.checkpoints.resolve_backbone).

Frozen R3D-50 with BN in inference mode, L2-normalised 2048-d pooled feature, one Dense layer; train clips
of 32 frames at stride 2 with crop + flip only; SGD momentum 0.9, lr 32 at batch 1024 (linearly scaled),
5 warmup epochs then cosine, 100 epochs, no weight decay; 30-view test (10 clips x 3 crops of 256).
Expected on K400 with the released r3d_1x_k400_800ep backbone: about 66% top-1 (cvrl.md §9).
Writes metrics.json and predictions.csv (path,label,prediction) to the workdir. Classes are numbered from the
training labels (names sorted, or the integers given) and validation is mapped through them.
"""
from cvrl_fast.configs import Config


def get_config() -> Config:
    return Config({
        # 0: taken from the backbone's run (model.json, config.json or its tensor shapes). A non-zero value
        # is a check: it must equal the run's, else the tools stop with an error naming both.
        "model": {"depth": 0, "width_multiplier": 0.0},
        "eval": {
            "num_classes": 0,                 # 0: 1 + the largest label in the lists
            "target_fps": 25.0,               # fixed-rate index space (cvrl.md §7.2); 0 = native frames
            "clip_frames": 32,
            "frame_stride": 2,
            "crop_size": 224,
            "area_range": (0.3, 1.0),
            "aspect_ratio_range": (0.5, 2.0),
            "num_test_clips": 10,
            "test_short_side": 256,
            "test_crop_size": 256,
            "batch_size": 1024,               # videos per head step
            "base_batch_size": 1024,          # lr is learning_rate * batch_size / base_batch_size
            "learning_rate": 32.0,
            "epochs": 100.0,
            "warmup_epochs": 5.0,
            "train_views": 0,                 # 0: one fresh clip per video and epoch (the reference)
            "batch_clips": 8,                 # clips per backbone call
            "num_threads": 2,                 # decode threads
            "seed": 0,
            # fine-tuning only (cvrl.md §6.2)
            "dropout_rate": 0.2,
            "weight_decay": 1e-4,
        },
    })
