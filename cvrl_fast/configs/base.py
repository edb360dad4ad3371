"""Defaults shared by every pretraining config (the paper's recipe, cvrl.md §3-§5)."""
import dataclasses

from cvrl_fast._augment import AugmentConfig
from cvrl_fast.configs import Config

_CLIP_SHAPE_FIELDS = ("num_frames", "frame_stride", "crop_size")  # set by data.num_frames/... instead


def augment_defaults() -> dict:
    """AugmentConfig's defaults, read from the dataclass so the config cannot drift from it."""
    return {f.name: f.default for f in dataclasses.fields(AugmentConfig) if f.name not in _CLIP_SHAPE_FIELDS}


def get_config() -> Config:
    return Config({
        "model": {
            "depth": 50,                  # 18/34 (basic blocks) or 50/101/152 (bottleneck)
            "width_multiplier": 1.0,      # the paper's wider variants: 2.0, 4.0
            "bn_momentum": 0.9,
            "bn_epsilon": 1e-5,
            "zero_init_residual": False,  # True: each block's last BN starts at gamma 0 (not the reference)
            "head_hidden_dim": 2048,
            "head_num_hidden_layers": 3,
            "head_output_dim": 128,
            "head_bn_momentum": 0.997,
            "init_backbone": "",          # optional official backbone checkpoint to start from
        },
        "data": {
            # What trains: the files of data.sources when it is set, synthetic data when it is empty.
            # source is "auto" (that rule), "synthetic" (insists on synthetic data: sources must be
            # empty) or a dataset name such as "kinetics400" (a label that insists on sources).
            "source": "auto",
            "sources": (),                # files, directories, globs, CSV/TXT lists or TFRecords
            "num_frames": 16,
            "frame_stride": 2,
            "image_size": 224,
            "num_train_videos": 0,        # epoch length of the step schedule; 0: the videos in data.sources
            "synthetic_videos": 1024,     # epoch length of the synthetic stand-in
            "seed": 0,
            "prefetch": 2,
            # Where the colour stage (jitter, grayscale, blur, solarize) runs: "host" (the loader's C++
            # threads), "device" (cvrl_fast.device_augment inside the train step, on each replica's
            # accelerator) or "auto": device when the replicas are GPUs or TPUs, host on a CPU-only run.
            "augment_on": "auto",
            # Which input backend reads the files: "cpp" (the project's C++ loader: any FFmpeg format and
            # reference TFRecords) or "dali" (NVIDIA DALI: NVDEC on GPU replicas, DALI's CPU decoder for
            # VP8/VP9/MJPEG otherwise; needs `make setup-dali`; colour augmentation runs on the device).
            "loader": "cpp",
            # How the cpp backend runs (cvrl_fast.data.pretrain_dataset(engine=...)): "graph" (a pure TF
            # pipeline of the engine's op: its iterator state is in the checkpoint, it can run on tf.data
            # service; 1.2-1.3x the loader's pairs/s here), "loader" (PairLoader's C++ threads behind
            # from_generator; resumes at the checkpointed step; the same bytes) or "auto": graph when the op
            # library was built (TensorFlow importable at build time, as `make` builds it), else loader.
            "engine": "auto",
            # HOST:PORT of a tf.data service dispatcher (`cvrl-fast input-dispatcher`): the graph pipeline runs
            # on its input workers (`cvrl-fast input-worker`) instead of this process. Empty: local input.
            "service_address": "",
            # Every AugmentConfig field with its default (cvrl.md §1-§2); num_frames, frame_stride and
            # image_size above set the clip shape. target_fps 0 means native frames.
            "augment": augment_defaults(),
        },
        "train": {
            "global_batch_size": 1024,    # videos; 2x clips go through the network
            "epochs": 200.0,
            "warmup_epochs": 5.0,
            "total_steps": 0,             # 0: round(epochs * num_train_videos / global_batch_size)
            "base_learning_rate": 0.32,   # at batch 1024, linearly scaled (cvrl.md §5)
            "base_batch_size": 1024,
            "lr_replica_factor": 1.0,     # reference-parity knob (cvrl.md §5)
            "optimizer": "sgd",           # "sgd" (paper), "lars", or "adam" (small-scale runs)
            "momentum": 0.9,
            "lars_eta": 0.001,
            "weight_decay": 1e-6,
            "temperature": 0.1,
            "stop_after_steps": 0,        # >0: stop (and checkpoint) after this many steps of this run
        },
        "runtime": {
            "precision": "float32",       # float32 | mixed_bfloat16 | mixed_float16 (loss scaling)
            "jit_compile": "auto",        # auto (on for GPU/TPU, off for CPU) | true | false
            "strategy": "default",        # default | mirrored | multi_worker | tpu
            "tpu": "",                    # TPU address for strategy=tpu
            "deterministic": False,       # tf.config.experimental.enable_op_determinism()
            "seed": 0,                    # model init seed
        },
        "checkpoint": {
            "every_steps": 1000,
            "max_to_keep": 3,
        },
        "log": {
            "every_steps": 10,
            "tensorboard": True,
            "progress_bar": True,         # a bar when stdout is a terminal, else plain lines; false: plain lines
        },
    })
