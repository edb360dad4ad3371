"""CVRL pretraining, in one readable module (cvrl.md §3-§5, §8).

Read it top to bottom; each banner is one concern:

    setup       strategy, precision, XLA, determinism
    input       distributed tf.data of {"view1", "view2"}: uint8 [b, T, S, S, 3] per replica
    model       R3D backbone + projection head, optimizer with the warmup-cosine schedule
    step        one train step: both views in one forward pass, NT-Xent over all replicas, weight decay
    checkpoint  tf.train.CheckpointManager of model, optimizer, step and loader state; SIGTERM handling
    loop        the training loop: logging (TensorBoard, progress bar), checkpoints, exact resume

Entry point: `train(config, workdir) -> TrainResult`; the CLI is `cvrl-fast pretrain`.

Distributed semantics (cvrl.md §5, cvrl_fast rule): every replica computes the loss of its local anchors
against the negatives of *all* replicas, scales it by 1/R, and the optimizer sums gradients over replicas,
so the update is the gradient of the global-batch mean L, whatever the replica count.
"""
from __future__ import annotations

import dataclasses
import glob
import io
import json
import logging
import os
import shutil
import signal
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from . import models
from ._device_augment import device_augment
from ._progress import Progress
from .checkpoints import load_official_backbone, save_backbone_snapshot, save_official_backbone  # noqa: F401
from .configs import Config, load_config  # noqa: F401  (re-exported)
from .losses import nt_xent_loss, weight_decay_loss  # noqa: F401  (re-exported)
from .schedules import LARS, WarmupCosine, scaled_learning_rate, steps_for_epochs, warmup_steps_for

__all__ = ["train", "TrainResult", "nt_xent_loss", "load_official_backbone", "save_official_backbone",
           "make_strategy", "build_model", "make_train_step", "synthetic_pretrain_dataset"]

log = logging.getLogger("cvrl_fast.trainer")

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


# ================================================================================================
# setup
# ================================================================================================
def make_strategy(name: str, tpu_address: str = "") -> tf.distribute.Strategy:
    """default | mirrored (all GPUs, else all logical CPUs) | multi_worker (TF_CONFIG) | tpu."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("runtime.strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"runtime.strategy={name!r}: must be one of {STRATEGIES}")


def resolve_jit_compile(value) -> bool:
    """'auto' turns XLA on for GPU/TPU and off on CPU, where XLA's Conv3D is much slower."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"runtime.jit_compile={value!r}: must be auto, true or false")


def replica_device_type(strategy) -> str:
    """"TPU", "GPU" or "CPU": the devices the replicas (and so the train step) run on. The default and
    mirrored strategies put them on the GPUs when there are any (see make_strategy)."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "TPU"
    return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"


def onednn_bfloat16_active() -> bool:
    """Whether TensorFlow runs bfloat16 CPU ops through oneDNN in this process: oneDNN is on (by default on
    CPUs with AVX-512 VNNI/BF16 or AMX, or with TF_ENABLE_ONEDNN_OPTS=1) and the CPU takes oneDNN's
    bfloat16 path (AVX-512 or AVX-NE-CONVERT). Elsewhere TF falls back to its Eigen kernels."""
    from tensorflow.python.util import _pywrap_util_port, _pywrap_utils

    try:
        return bool(_pywrap_util_port.IsMklEnabled() and
                    _pywrap_utils.IsDataTypeSupportedByOneDNNOnThisCPU(tf.bfloat16.as_datatype_enum))
    except AttributeError:  # another TF build without these probes: trust the switch the user can set
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "") not in ("0", "false", "False")


def check_precision(precision: str, device_type: str) -> None:
    """Refuse mixed_bfloat16 on CPU replicas when oneDNN's bfloat16 kernels would run it.

    On an AMD EPYC with AVX512_BF16 (TensorFlow 2.21, oneDNN on by default there) those kernels made
    non-finite weights within two steps of the tiny config in 2 of 3 runs, in different variables each
    run; with TF_ENABLE_ONEDNN_OPTS=0 (Eigen's bfloat16 kernels) every run was finite. The switch is read
    once, when TensorFlow is imported, so it cannot be flipped here: `cvrl-fast pretrain` sets it before
    importing TensorFlow when a config asks for bfloat16 (README, "bfloat16 on CPU").
    """
    if precision == "mixed_bfloat16" and device_type == "CPU" and onednn_bfloat16_active():
        raise ValueError(
            "runtime.precision=mixed_bfloat16 on CPU: this process runs TensorFlow's oneDNN bfloat16 kernels, "
            "which gave non-finite weights within two steps on CPUs like this one (README, 'bfloat16 on CPU'). "
            "Set TF_ENABLE_ONEDNN_OPTS=0 before TensorFlow is imported (cvrl-fast pretrain does this itself), "
            "or use runtime.precision=float32")


def set_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"runtime.precision={precision!r}: must be one of {PRECISIONS}")
    keras.mixed_precision.set_global_policy(precision)


def _task_info(strategy) -> tuple[int, bool]:
    """(worker index, is_chief) of this process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 0, True
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    is_chief = task_type in (None, "chief") or (task_type == "worker" and task_id == 0
                                                and "chief" not in resolver.cluster_spec().as_dict())
    return int(task_id), bool(is_chief)


# ================================================================================================
# input
# ================================================================================================
def synthetic_pretrain_dataset(*, per_replica_batch: int, global_batch: int, num_frames: int,
                               image_size: int, seed: int, start_step: int,
                               input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Deterministic stand-in for the video loader: element = one per-replica batch of
    {"view1", "view2"}: uint8 [b, T, S, S, 3].

    Video g (global index, g = step * N + position in the global batch) is a function of (seed, g) only,
    so the same global batch comes out for any replica/worker count and after a resume at `start_step`.
    View 2 is a shifted, noisier copy of view 1, which gives the contrastive task something to learn.
    """
    pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline = input_context.input_pipeline_id if input_context else 0
    local_replicas = global_batch // per_replica_batch // pipelines
    span = local_replicas * per_replica_batch  # videos per step read by this pipeline
    shape = [num_frames, image_size, image_size, 3]

    def videos_of_step(step):
        first = step * global_batch + pipeline * span
        return tf.data.Dataset.range(first, first + span)

    def make_video(g):
        s = tf.stack([tf.cast(seed, tf.int64), g])
        base = tf.random.stateless_uniform(shape, seed=s, maxval=256, dtype=tf.int32)
        noise = tf.random.stateless_uniform(shape, seed=s + [0, 1 << 40], minval=-24, maxval=25, dtype=tf.int32)
        view2 = tf.clip_by_value(tf.roll(base, shift=1, axis=1) + noise, 0, 255)
        return {"view1": tf.cast(base, tf.uint8), "view2": tf.cast(view2, tf.uint8)}

    ds = tf.data.Dataset.range(start_step, tf.int64.max).flat_map(videos_of_step)
    ds = ds.map(make_video, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(per_replica_batch, drop_remainder=True)


class StepLoaderState:
    """state()/restore() of a source whose position is the global step: the synthetic source, and the
    C++ loader (`cvrl_fast.data.pretrain_dataset(..., start_batch=step)`, pixels a pure function of
    (seed, epoch, video)). The state is checkpointed so a resume can check it matches the source."""

    def __init__(self, source: str, step: int = 0):
        self.source = source
        self.step = step

    def state(self):
        return {"source": self.source, "next_step": int(self.step)}

    def restore(self, state):
        if state.get("source") != self.source:
            raise ValueError(f"checkpointed loader state {state!r} is not from a {self.source!r} source")
        self.step = int(state["next_step"])


@dataclasses.dataclass(frozen=True)
class DataPlan:
    """What `data.*` selects, resolved before anything is built.

    kind: "synthetic" (the generated stand-in) or "files" (the C++ loader over `data.sources`).
    num_sources: videos (TFRecord records count one each) found in `data.sources`; 0 for synthetic data.
    videos_per_epoch: the epoch length of the step schedule.
    """
    kind: str
    num_sources: int
    videos_per_epoch: int


def plan_data(cfg: Config) -> DataPlan:
    """Resolve `data.source` / `data.sources` (the rule is in configs/base.py and the README).

    `data.sources` set: train on those files (`data.source` is "auto" or a dataset name); empty: synthetic
    data, which `data.source="auto"` or "synthetic" selects. `data.source="synthetic"` with sources, or a
    dataset name without sources, is an error. Every listed file must exist; a global batch larger than the
    dataset is an error, because the loader would put one video several times into a batch and its copies
    would count as each other's negatives.
    """
    source, sources = cfg.data.source, tuple(cfg.data.sources)
    if source == "synthetic" and sources:
        raise ValueError(f"data.source='synthetic' contradicts data.sources={list(sources)}: drop data.sources to "
                         "train on synthetic data, or set data.source=auto to train on those files")
    if not sources:
        if source not in ("auto", "synthetic"):
            raise ValueError(f"data.source={source!r} needs data.sources (video files, directories, globs, "
                             "CSV/TXT lists or TFRecord files)")
        return DataPlan("synthetic", 0, cfg.data.num_train_videos or cfg.data.synthetic_videos)
    from ._loader import resolve_sources  # lazy: the C++ extension

    refs, _ = resolve_sources(list(sources))
    missing = sorted({r.path for r in refs if not os.path.isfile(r.path)})
    if missing:
        raise FileNotFoundError(f"data.sources: {len(missing)} of {len(refs)} listed videos do not exist, "
                                f"first: {missing[0]!r}")
    batch = cfg.train.global_batch_size
    if batch > len(refs):
        raise ValueError(f"train.global_batch_size={batch} is larger than the {len(refs)} videos in data.sources: "
                         f"a batch would hold the same video more than once, and its copies would count as "
                         f"negatives of each other; use a global batch of at most {len(refs)}")
    return DataPlan("files", len(refs), cfg.data.num_train_videos or len(refs))


def make_input(cfg: Config, strategy, start_step: int, loader_state: dict | None, plan: DataPlan | None = None,
               augment_on: str = "host", start_batch_step: int | None = None):
    """(distributed dataset, loader objects with state()/restore()).

    Synthetic data (`plan_data`) uses `synthetic_pretrain_dataset`; files go through
    `cvrl_fast.data.pretrain_dataset` (engine `data.engine`; on tf.data service workers when
    `data.service_address` is set), started at batch `start_batch_step` (default `start_step`; 0 when the
    caller restores the graph pipeline's iterator from the checkpoint instead), with the colour stage in
    the loader (augment_on "host") or left to the train step ("device": the elements carry
    "colour1"/"colour2"). Synthetic data has no colour stage in either mode.
    """
    if start_batch_step is None:
        start_batch_step = start_step
    global_batch = cfg.train.global_batch_size
    if global_batch % strategy.num_replicas_in_sync:
        raise ValueError(f"train.global_batch_size={global_batch} is not divisible by the "
                         f"{strategy.num_replicas_in_sync} replicas")
    plan = plan or plan_data(cfg)
    loader = StepLoaderState(plan.kind, start_step)
    loader.pipeline_stats = []  # one PairLoader.stats dict per input pipeline of this worker
    if loader_state is not None:
        loader.restore(loader_state)
        if loader.step != start_step:
            raise ValueError(f"checkpointed loader position {loader.step} != checkpointed global step {start_step}")

    def dataset_fn(ctx: tf.distribute.InputContext):
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        if plan.kind == "synthetic":
            ds = synthetic_pretrain_dataset(
                per_replica_batch=per_replica, global_batch=global_batch, num_frames=cfg.data.num_frames,
                image_size=cfg.data.image_size, seed=cfg.data.seed, start_step=start_step, input_context=ctx)
        else:
            from . import data  # lazy: the C++ loader

            augment = augment_config(cfg)
            # batch_size is the GLOBAL batch; the loader shards by ctx and yields per-replica batches, so
            # a pipeline feeding k local replicas has delivered k batches per step.
            local_replicas = ctx.num_replicas_in_sync // ctx.num_input_pipelines
            graph = cfg.data.engine == "graph"
            if not graph:
                loader.pipeline_stats.append({})
            if cfg.data.loader == "dali":
                from . import dali

                ds = dali.pretrain_dataset(list(cfg.data.sources), batch_size=global_batch, seed=cfg.data.seed,
                                           device="gpu" if dali_on_gpu else "cpu", input_context=ctx, config=augment,
                                           start_batch=start_batch_step * local_replicas,
                                           stats=loader.pipeline_stats[-1])
                return ds  # DALI prefetches itself (and on the GPU the batches are already in device memory)
            ds = data.pretrain_dataset(list(cfg.data.sources), batch_size=global_batch, seed=cfg.data.seed,
                                       input_context=ctx, config=augment, start_batch=start_batch_step * local_replicas,
                                       stats=None if graph else loader.pipeline_stats[-1], augment_on=augment_on,
                                       engine=cfg.data.engine, log_skips=not graph)  # graph: tf_ops.log_new_skips
            if cfg.data.service_address:
                ds = data.distribute(ds, cfg.data.service_address)
        return ds.prefetch(cfg.data.prefetch)

    if host_iterated(cfg, plan, strategy):
        local_replicas, first_replica = _local_replicas(strategy)
        ctx = tf.distribute.InputContext(num_input_pipelines=strategy.num_replicas_in_sync // local_replicas,
                                         input_pipeline_id=first_replica // local_replicas,
                                         num_replicas_in_sync=strategy.num_replicas_in_sync)
        return HostInput(strategy, dataset_fn(ctx), local_replicas, first_replica), [loader]
    dali_on_gpu = cfg.data.loader == "dali" and replica_device_type(strategy) == "GPU"
    if dali_on_gpu:  # one DALI pipeline per GPU, its batches already on that GPU (DALI's multi-GPU recipe)
        options = tf.distribute.InputOptions(experimental_place_dataset_on_device=True,
                                             experimental_fetch_to_device=False,
                                             experimental_replication_mode=tf.distribute.InputReplicationMode.PER_REPLICA)
    else:
        options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    dist = strategy.distribute_datasets_from_function(dataset_fn, options)
    return dist, [loader]


def host_iterated(cfg: Config, plan: DataPlan, strategy) -> bool:
    """Whether this run reads its input through `HostInput` (so the checkpoint holds the iterator): the
    local graph engine under any strategy but TPUStrategy's, whose input pipeline tf.distribute places on
    the TPU hosts."""
    return (plan.kind == "files" and cfg.data.engine == "graph" and not cfg.data.service_address
            and not isinstance(strategy, tf.distribute.TPUStrategy))


def _local_replicas(strategy) -> tuple[int, int]:
    """(replicas of this worker, global id of its first replica)."""
    try:
        local = len(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no worker devices: one replica, here
        return 1, 0
    worker_index, _ = _task_info(strategy)
    return local, worker_index * local


class HostInput:
    """The graph engine's input read by a plain tf.data iterator on this worker's host, not by
    tf.distribute's distributed iterator, which TF cannot save for a multi-replica strategy. The host
    iterator is trackable, so the training checkpoint holds its position. Each step takes the next
    `local_replicas` per-replica batches and gives batch k to local replica k, the assignment of
    tf.distribute's multi-device iterator (pipeline batch j to local replica j mod local_replicas), so
    both paths train on the same batches."""

    def __init__(self, strategy, dataset, local_replicas: int, first_replica: int):
        self.strategy, self.local_replicas, self.first_replica = strategy, local_replicas, first_replica
        self.dataset = dataset
        try:
            self.devices = tuple(strategy.extended.worker_devices)
        except RuntimeError:
            self.devices = (None,)

    def __iter__(self):
        with tf.device("/cpu:0"):
            return HostIterator(self, iter(self.dataset))


class HostIterator:
    def __init__(self, source: HostInput, iterator):
        self.source, self.iterator = source, iterator  # `iterator` goes into the checkpoint

    def __iter__(self):
        return self

    def __next__(self):
        src = self.source
        batches = [next(self.iterator) for _ in range(src.local_replicas)]
        if src.devices == (None,):
            return batches[0]

        def value_fn(ctx):
            local = ctx.replica_id_in_sync_group - src.first_replica
            with tf.device(src.devices[local]):  # the copy to the replica's device starts now
                return tf.nest.map_structure(tf.identity, batches[local])

        return src.strategy.experimental_distribute_values_from_function(value_fn)


def graph_skipped_sources(cfg: Config) -> list[tuple[str, str]]:
    """The sources of `data.sources` the graph engine skipped in this process (the op keeps one record per
    process; on tf.data service the workers skip, and log, in theirs)."""
    from . import tf_ops
    from ._loader import resolve_sources

    names = {r.name() for r in resolve_sources(list(cfg.data.sources))[0]}
    return sorted((name, why) for name, why in tf_ops.skipped_sources()[0] if name in names)


AUGMENT_ON = ("auto", "host", "device")
ENGINES = ("auto", "graph", "loader")  # "auto" or one of cvrl_fast.data.ENGINES


def resolve_engine(cfg: Config) -> tuple[str, str]:
    """(data.engine -> "graph" | "loader", why): "auto" is the graph engine when the cpp backend reads the
    files and the op library loads (it is built when TensorFlow is importable at build time), else the
    loader engine. Both give the same batches; the graph engine is faster and checkpoints its iterator."""
    if cfg.data.engine != "auto":
        return cfg.data.engine, f"data.engine={cfg.data.engine}"
    if cfg.data.loader != "cpp":
        return "loader", f"data.engine=auto, data.loader={cfg.data.loader}"
    from . import tf_ops

    try:
        tf_ops.library()
    except (ImportError, tf.errors.OpError) as e:
        if cfg.data.service_address:
            raise ValueError(f"data.service_address={cfg.data.service_address!r} needs the graph engine, whose "
                             f"op library is not usable here ({str(e).splitlines()[0]})") from None
        return "loader", f"data.engine=auto; the op library is not usable: {str(e).splitlines()[0]}"
    return "graph", "data.engine=auto"


LOADERS = ("cpp", "dali")


def resolve_augment_on(value: str, device_type: str, loader: str = "cpp") -> str:
    """data.augment_on -> "host" | "device": "auto" puts the colour stage on GPU and TPU replicas (the host
    cores are what limits input there) and keeps it in the loader on a CPU-only run (where the replica is
    the host: doing it in the step only moves the same work onto the cores that run the model)."""
    if value not in AUGMENT_ON:
        raise ValueError(f"data.augment_on={value!r}: must be one of {AUGMENT_ON}")
    if loader == "dali":  # DALI's pipeline stops after crop, resize and flip
        if value == "host":
            raise ValueError("data.augment_on=host with data.loader=dali: the DALI pipeline leaves the colour stage "
                             "to the train step; use data.augment_on=device (or auto), or data.loader=cpp")
        return "device"
    if value == "auto":
        return "device" if device_type in ("GPU", "TPU") else "host"
    return value


def augment_config(cfg: Config):
    """The loader's AugmentConfig: clip shape from `data`, everything else from `data.augment`."""
    from ._augment import AugmentConfig

    fields = cfg.data.augment.to_dict()
    fields["target_fps"] = fields["target_fps"] or None  # 0 = native frames
    return AugmentConfig(num_frames=cfg.data.num_frames, frame_stride=cfg.data.frame_stride,
                         crop_size=cfg.data.image_size, **fields)


# ================================================================================================
# model
# ================================================================================================
def backbone_config(cfg: Config) -> models.BackboneConfig:
    return models.BackboneConfig(depth=cfg.model.depth, width_multiplier=cfg.model.width_multiplier,
                                 bn_momentum=cfg.model.bn_momentum, bn_epsilon=cfg.model.bn_epsilon,
                                 zero_init_residual=cfg.model.zero_init_residual)


def build_model(cfg: Config) -> tuple[keras.Model, keras.Model]:
    """(pretrain model, backbone). Call inside strategy.scope() so variables are mirrored."""
    bcfg = backbone_config(cfg)
    backbone = models.build_backbone(bcfg, num_frames=cfg.data.num_frames, image_size=cfg.data.image_size)
    backbone.cvrl_config = bcfg
    if cfg.model.init_backbone:
        load_official_backbone(cfg.model.init_backbone, backbone, bcfg)
    head = models.HeadConfig(hidden_dim=cfg.model.head_hidden_dim,
                             num_hidden_layers=cfg.model.head_num_hidden_layers,
                             output_dim=cfg.model.head_output_dim, bn_momentum=cfg.model.head_bn_momentum,
                             bn_epsilon=cfg.model.bn_epsilon)
    return models.build_pretrain_model(backbone, head), backbone


def schedule_steps(cfg: Config, videos_per_epoch: int | None = None) -> tuple[int, int]:
    """(total steps D, warmup steps W) from epochs, the epoch length and the global batch.

    The epoch length is `videos_per_epoch` (the resolved data, `plan_data`), else `data.num_train_videos`.
    W is capped at a fifth of D (`schedules.warmup_steps_for`).
    """
    videos = videos_per_epoch or cfg.data.num_train_videos or plan_data(cfg).videos_per_epoch
    per_epoch = videos / cfg.train.global_batch_size
    total = cfg.train.total_steps or steps_for_epochs(cfg.train.epochs, videos, cfg.train.global_batch_size)
    if total < 1:
        raise ValueError(f"train.epochs={cfg.train.epochs} of {videos} videos at batch {cfg.train.global_batch_size} "
                         "is less than one step: raise train.epochs or set train.total_steps")
    warmup = warmup_steps_for(int(total), int(round(cfg.train.warmup_epochs * per_epoch)))
    return int(total), warmup


def build_optimizer(cfg: Config, total_steps: int, warmup_steps: int):
    lr0 = scaled_learning_rate(cfg.train.base_learning_rate, cfg.train.global_batch_size,
                               cfg.train.base_batch_size, cfg.train.lr_replica_factor)
    schedule = WarmupCosine(lr0, total_steps, warmup_steps)
    if cfg.train.optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=schedule, momentum=cfg.train.momentum, nesterov=False)
    elif cfg.train.optimizer == "lars":
        opt = LARS(learning_rate=schedule, momentum=cfg.train.momentum, eta=cfg.train.lars_eta)
    elif cfg.train.optimizer == "adam":
        # Per-parameter step sizes: robust to the very uneven gradient scales of a fresh deep BN network
        # at small batch (the stem's gradient is ~1000x its weight norm at init on the demo data).
        opt = keras.optimizers.Adam(learning_rate=schedule, beta_1=cfg.train.momentum)
    else:
        raise ValueError(f"train.optimizer={cfg.train.optimizer!r}: must be sgd, lars or adam")
    if cfg.runtime.precision == "mixed_float16":
        # float16 gradients underflow without it; bfloat16 has float32's range and needs none.
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt, schedule


# ================================================================================================
# step
# ================================================================================================
def _all_finite(tensors) -> tf.Tensor:
    return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]))


def _test_nan_at(step, at_step: int) -> tf.Tensor:
    return tf.where(tf.equal(step, at_step), tf.constant(float("nan")), tf.constant(0.0))


def make_train_step(model: keras.Model, optimizer, strategy, *, temperature: float, weight_decay: float,
                    jit_compile: bool = False, _test_nonfinite: tuple[str, int] | None = None):
    """Return `train_step(per_replica_batch) -> dict of replica-averaged metrics` (a tf.function).

    Besides the metrics, "nonfinite_loss" (loss or gradients not finite; with loss scaling the loss only,
    since the loss-scale optimizer skips overflowing gradients itself) and "nonfinite_weights" (a weight
    not finite after the update) are the number of replicas that saw it, so every worker sees the same
    flags and stops at the same step. `_test_nonfinite=("loss" | "weights", step)` (tests) makes the loss,
    or a weight after the update, NaN at that 1-based step.
    """
    num_replicas = strategy.num_replicas_in_sync
    kernels = models.kernel_variables(model)
    variables = model.trainable_variables
    loss_scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def replica_step(batch):
        # uint8 -> [0, 1] float32 on the device; both views in one forward pass so BN sees 2b clips.
        views = tf.concat([batch["view1"], batch["view2"]], axis=0)
        if "colour1" in batch:  # augment_on="device": the colour stage runs here, on the replica's device
            frames = device_augment(views, tf.concat([batch["colour1"], batch["colour2"]], axis=0))
        else:
            frames = tf.cast(views, tf.float32) / 255.0
        with tf.GradientTape() as tape:
            z = model(frames, training=True)
            z1, z2 = tf.split(z, 2, axis=0)
            contrastive, metrics = nt_xent_loss(z1, z2, temperature, return_metrics=True)
            regularization = weight_decay_loss(kernels, weight_decay)
            loss = contrastive + regularization
            if _test_nonfinite is not None and _test_nonfinite[0] == "loss":
                loss = loss + _test_nan_at(optimizer.iterations + 1, _test_nonfinite[1])
            # 1/R here + the optimizer's cross-replica gradient SUM = gradient of the global mean.
            objective = loss / num_replicas
            if loss_scaling:
                objective = optimizer.scale_loss(objective)
        grads = tape.gradient(objective, variables)
        finite_step = tf.math.is_finite(loss) if loss_scaling else tf.math.is_finite(loss) & _all_finite(grads)
        if _test_nonfinite is not None and _test_nonfinite[0] == "weights":
            step = optimizer.iterations + 1
            optimizer.apply(grads, variables)
            variables[0].assign_add(tf.fill(tf.shape(variables[0]), _test_nan_at(step, _test_nonfinite[1])))
        else:
            optimizer.apply(grads, variables)
        finite_weights = _all_finite(model.variables)
        return {"loss": loss, "contrastive_loss": contrastive, "regularization_loss": regularization, **metrics,
                "nonfinite_loss": 1.0 - tf.cast(finite_step, tf.float32),
                "nonfinite_weights": 1.0 - tf.cast(finite_weights, tf.float32)}

    if jit_compile:
        # XLA compiles the per-replica computation (as Keras' own fit does under a strategy).
        replica_step = tf.function(replica_step, jit_compile=True)

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM if k.startswith("nonfinite_") else
                                   tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

    return train_step


# ================================================================================================
# checkpoint
# ================================================================================================
class Interrupts:
    """SIGTERM and Ctrl-C (SIGINT) become a flag the loop checks after each step: save, then exit cleanly.

    After the first signal a second Ctrl-C gets the default action (the process ends at once, rc 130 from a
    shell): the checkpoint on disk is the last one saved, since a save interrupted half-way is never made
    the latest (TF writes its files under temporary names and updates the `checkpoint` file last).
    """

    def __init__(self):
        self.received: str | None = None  # "SIGTERM" or "SIGINT"
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
            # os.write, not print: a handler may run in the middle of another write to the same stream.
            os.write(2, f"pretrain: {name}: saving a checkpoint after this step, then exiting"
                        f"{' (Ctrl-C again: exit at once)' if signum == signal.SIGINT else ''}\n".encode())
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # the second Ctrl-C ends the process at once

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        return False


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss, gradient or weight; nothing was saved after the last good step."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint (or the backbone export beside it) could not be written: a full disk, a lost mount. The
    last complete checkpoint is still the latest one, so the same command resumes from it."""


class InputError(RuntimeError):
    """The training data ran out of usable videos (every source failed to decode, or too many in a row)."""


def _loader_failure(e: "tf.errors.OpError") -> str | None:
    """The engine's own error, unwrapped from TensorFlow's: the loader runs inside tf.data
    (`from_generator`), so its RuntimeError reaches the loop as an OpError whose text holds
    "RuntimeError: PairLoader: ..." among TF's node and op annotations; the graph engine's op fails with
    "cvrl_fast input: PairLoader: ...". None for any other error."""
    for line in str(e.message).splitlines():
        for prefix in ("RuntimeError: PairLoader: ", "cvrl_fast input: PairLoader: "):
            _, marker, rest = line.partition(prefix)
            if marker:
                # TF appends node annotations to the op's message: "... [[{{node ...}}]]"
                return rest.split(" [[", 1)[0].split("\t [[", 1)[0].strip()
    return None


def write_scalar(name: str, value: float, step: int) -> None:
    """A TensorBoard scalar via core TF's tf.summary.write, so the `tensorboard` package is not needed
    to write logs (tf.summary.scalar lives in it). The metadata marks it for the scalars plugin."""
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=metadata)


def make_stop_agreement(strategy):
    """`agree(flag) -> bool`: under MultiWorkerMirroredStrategy, whether ANY worker got a signal (an
    all-reduce), so every worker leaves the loop after the same step instead of one waiting forever in a
    collective. Elsewhere the local flag."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return lambda flag: flag

    @tf.function
    def total(x):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.identity(x)), axis=None)

    return lambda flag: float(total(tf.constant(1.0 if flag else 0.0))) > 0


INPUT_ITERATOR = "input_iterator"  # the graph pipeline's iterator in the training checkpoint


def _attach_input_iterator(ckpt: tf.train.Checkpoint, iterator) -> None:
    """Tracks the graph pipeline's iterator in the training checkpoint: every later save holds its
    position, and, after a restore, attaching it restores it from that checkpoint at once (TF's deferred
    restoration of objects attached after `restore`). So it must be attached before the first `next`."""
    setattr(ckpt, INPUT_ITERATOR, iterator)


def checkpoint_dir(workdir: str, worker_index: int, is_chief: bool) -> str:
    # Every worker must call save() under MultiWorkerMirroredStrategy; only the chief's copy is the
    # run's checkpoint. Each worker keeps its own copy because loader state is per worker.
    return os.path.join(workdir, "checkpoints" if is_chief else f"checkpoints_worker{worker_index}")


# Config keys a resumed run may change: they do not touch the model, the data order or the schedule.
# data.engine and data.service_address: both engines give the same batches, wherever they run.
RESUMABLE_KEYS = ("log.", "checkpoint.every_steps", "checkpoint.max_to_keep", "train.stop_after_steps",
                  "data.prefetch", "data.engine", "data.service_address", "runtime.jit_compile", "runtime.tpu")


def _flat_json(cfg_dict: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg_dict.items():
        if isinstance(v, dict):
            out.update(_flat_json(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(saved: dict, cfg: Config) -> list[str]:
    """`key: saved -> now` for every key that differs and that a resumed run may not change."""
    now = _flat_json(json.loads(json.dumps(cfg.to_dict(), default=list)))
    old = _flat_json(saved)
    out = []
    for key in sorted(set(now) | set(old)):
        if key.startswith(RESUMABLE_KEYS) or key not in old:  # keys an older version did not record
            continue
        if old.get(key) != now.get(key):
            out.append(f"{key}: {old.get(key)!r} -> {now.get(key)!r}")
    return out


def check_workdir(workdir: str, cfg: Config) -> None:
    """A workdir remembers its config: a run with checkpoints there is resumed only by a compatible config,
    checked before anything in the workdir is touched."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise NotADirectoryError(f"--workdir {workdir!r} is a file, not a directory")
    path = os.path.join(workdir, "config.json")
    has_checkpoint = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")) is not None
    if not (has_checkpoint and os.path.isfile(path)):
        return
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable ({e}); the run's config is needed to resume it") from None
    diffs = config_differences(saved, cfg)
    if diffs:
        raise ValueError(f"{workdir!r} holds a run made with another config ({'; '.join(diffs)}): resume it with its "
                         f"own config (--config {path}), or use a new --workdir")


def write_json_atomic(path: str, value) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, default=list)
        f.write("\n")
    os.replace(tmp, path)


# ================================================================================================
# loop
# ================================================================================================
@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    backbone: keras.Model
    step: int
    total_steps: int
    metrics: dict
    interrupted: bool
    checkpoint_path: str | None
    start_step: int = 0
    backbone_path: str | None = None
    seconds: float = 0.0


def validate_config(cfg: Config) -> None:
    """Values the trainer cannot run with, each named with its valid range (before anything is built)."""
    checks = [
        ("train.global_batch_size", cfg.train.global_batch_size >= 1, ">= 1"),
        ("train.base_batch_size", cfg.train.base_batch_size >= 1, ">= 1"),
        ("train.total_steps", cfg.train.total_steps >= 0, ">= 0 (0: from train.epochs)"),
        ("train.epochs", cfg.train.epochs > 0 or cfg.train.total_steps > 0, "> 0 (or set train.total_steps)"),
        ("train.warmup_epochs", cfg.train.warmup_epochs >= 0, ">= 0"),
        ("train.stop_after_steps", cfg.train.stop_after_steps >= 0, ">= 0 (0: run to the end)"),
        ("train.temperature", cfg.train.temperature > 0, "> 0"),
        ("train.base_learning_rate", cfg.train.base_learning_rate > 0, "> 0"),
        ("train.weight_decay", cfg.train.weight_decay >= 0, ">= 0"),
        ("train.momentum", 0 <= cfg.train.momentum < 1, "in [0, 1)"),
        ("data.num_frames", cfg.data.num_frames >= 1, ">= 1"),
        ("data.frame_stride", cfg.data.frame_stride >= 1, ">= 1"),
        ("data.image_size", cfg.data.image_size >= 1, ">= 1"),
        ("data.num_train_videos", cfg.data.num_train_videos >= 0, ">= 0 (0: count data.sources)"),
        ("data.synthetic_videos", cfg.data.synthetic_videos >= 1, ">= 1"),
        ("data.prefetch", cfg.data.prefetch >= 0, ">= 0"),
        ("checkpoint.every_steps", cfg.checkpoint.every_steps >= 1, ">= 1"),
        ("checkpoint.max_to_keep", cfg.checkpoint.max_to_keep >= 1, ">= 1"),
        ("log.every_steps", cfg.log.every_steps >= 1, ">= 1"),
    ]
    for key, ok, valid in checks:
        if not ok:
            value = cfg
            for part in key.split("."):
                value = value[part]
            raise ValueError(f"{key}={value!r}: must be {valid}")
    if cfg.data.loader not in LOADERS:
        raise ValueError(f"data.loader={cfg.data.loader!r}: must be one of {LOADERS}")
    if cfg.data.engine not in ENGINES:
        raise ValueError(f"data.engine={cfg.data.engine!r}: must be one of {ENGINES}")
    if cfg.data.loader == "dali" and (cfg.data.engine == "graph" or cfg.data.service_address):
        raise ValueError("data.loader=dali runs its own pipeline: data.engine=graph and data.service_address "
                         "apply to data.loader=cpp only")
    if cfg.data.service_address and cfg.data.engine == "loader":
        raise ValueError(f"data.service_address={cfg.data.service_address!r} needs data.engine=graph: the loader "
                         "engine runs Python inside its tf.data graph (from_generator), which tf.data service "
                         "workers cannot run")
    if cfg.data.augment_on not in AUGMENT_ON:
        raise ValueError(f"data.augment_on={cfg.data.augment_on!r}: must be one of {AUGMENT_ON}")
    if cfg.runtime.precision not in PRECISIONS:
        raise ValueError(f"runtime.precision={cfg.runtime.precision!r}: must be one of {PRECISIONS}")


def train(cfg: Config, workdir: str, *, _test_nonfinite: tuple[str, int] | None = None,
          _test_kill_in_save: int | None = None) -> TrainResult:
    """Pretrain per `cfg` in `workdir`, resuming from its latest checkpoint if there is one.

    Raises ValueError/FileNotFoundError for a config or workdir it cannot run with (before anything is
    written), NonFiniteError if the loss, a gradient or a weight becomes non-finite (the run stops at that
    step; the last checkpoint saved before it is kept as it was).
    """
    validate_config(cfg)
    check_workdir(workdir, cfg)
    plan = plan_data(cfg)
    os.makedirs(workdir, exist_ok=True)
    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _train(cfg, workdir, plan, _test_nonfinite, _test_kill_in_save)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _describe_run(cfg, plan, strategy, device_type, total_steps, warmup_steps, jit, start_step, workdir,
                  augment_on="host", engine_why="") -> list[str]:
    """The start banner: what this run reads, how long it runs and where it writes."""
    if plan.kind == "synthetic":
        data_line = f"synthetic videos ({plan.videos_per_epoch} per epoch; set data.sources to train on files)"
    else:
        shown = ", ".join(map(str, cfg.data.sources[:3])) + (", ..." if len(cfg.data.sources) > 3 else "")
        data_line = f"{plan.num_sources} videos from {shown}"
        if plan.videos_per_epoch != plan.num_sources:
            data_line += f" (epoch length {plan.videos_per_epoch}: data.num_train_videos)"
        if cfg.data.loader == "dali":
            data_line += f"; decoded by DALI on the {'GPU' if device_type == 'GPU' else 'CPU'}"
        else:
            where = f" on the input workers at {cfg.data.service_address}" if cfg.data.service_address else ""
            data_line += f"; {cfg.data.engine} engine{where} ({engine_why})"
        data_line += (f"; colour augmentation on the {device_type} replicas (data.augment_on={cfg.data.augment_on})"
                      if augment_on == "device" else "")
    lr0 = scaled_learning_rate(cfg.train.base_learning_rate, cfg.train.global_batch_size, cfg.train.base_batch_size,
                               cfg.train.lr_replica_factor)
    m = cfg.model
    state = f"resuming at step {start_step}" if start_step else "new run"
    return [
        f"pretrain: {workdir} ({state})",
        f"  data: {data_line}; clips {cfg.data.num_frames}x{cfg.data.image_size}px at stride {cfg.data.frame_stride}",
        f"  schedule: {total_steps} steps of {cfg.train.global_batch_size} videos, warmup {warmup_steps}, "
        f"{cfg.train.optimizer} lr {lr0:.4g}, weight decay {cfg.train.weight_decay:g}",
        f"  model: R3D-{m.depth} width {m.width_multiplier:g}; {cfg.runtime.precision}; "
        f"{strategy.num_replicas_in_sync} {device_type} replica(s); XLA {'on' if jit else 'off'}",
        f"  writes: checkpoints every {cfg.checkpoint.every_steps} steps, backbone/ (official layout), "
        f"tensorboard/, config.json",
    ]


def _train(cfg: Config, workdir: str, plan: DataPlan, _test_nonfinite, _test_kill_in_save=None) -> TrainResult:
    t_start = time.perf_counter()
    # ---- setup ----
    # The strategy comes first: MultiWorkerMirroredStrategy must configure collectives before anything
    # else initialises the TF runtime.
    strategy = make_strategy(cfg.runtime.strategy, cfg.runtime.tpu)
    device_type = replica_device_type(strategy)
    engine, engine_why = resolve_engine(cfg)
    if engine != cfg.data.engine:
        cfg = cfg.copy()
        cfg.data.engine = engine  # so config.json records the engine that ran
    check_precision(cfg.runtime.precision, device_type)
    if cfg.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.runtime.seed)
    set_precision(cfg.runtime.precision)
    jit = resolve_jit_compile(cfg.runtime.jit_compile)
    augment_on = resolve_augment_on(cfg.data.augment_on, device_type, cfg.data.loader)
    worker_index, is_chief = _task_info(strategy)
    total_steps, warmup_steps = schedule_steps(cfg, plan.videos_per_epoch)

    # ---- model ----
    with strategy.scope():
        model, backbone = build_model(cfg)
        optimizer, schedule = build_optimizer(cfg, total_steps, warmup_steps)
        optimizer.build(model.trainable_variables)
        global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    loader_state_var = tf.Variable("", dtype=tf.string, trainable=False, name="loader_state")

    # ---- checkpoint: restore ----
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, global_step=global_step,
                               loader_state=loader_state_var)
    manager = tf.train.CheckpointManager(ckpt, checkpoint_dir(workdir, worker_index, is_chief),
                                         max_to_keep=cfg.checkpoint.max_to_keep)
    loader_state = None
    if manager.latest_checkpoint:
        try:
            restore_status = ckpt.restore(manager.latest_checkpoint)
            restore_status.assert_existing_objects_matched()
        except (AssertionError, ValueError, IndexError, tf.errors.OpError) as e:
            # IndexError: TF's reader of a truncated .data file ("Read less bytes than requested").
            raise ValueError(f"{manager.latest_checkpoint}: cannot resume from this checkpoint: it does not match "
                             f"this model or its files are corrupt or truncated ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300]})") from None
        saved = loader_state_var.numpy().decode()
        loader_state = json.loads(saved) if saved else None
    start_step = int(global_step.numpy())

    # ---- input ----
    # The local graph pipeline's iterator is part of the checkpoint (HostInput): a resume restores its
    # position, and the pipeline is built from batch 0. A checkpoint without one resumes at the step, as
    # the loader does (exact too: batch b is a pure function of b): the run began with the loader engine,
    # or on a TPU (tf.distribute's input pipeline there cannot be saved), or the input is on tf.data
    # service (whose iterator lives on the dispatcher and workers).
    checkpoint_iterator = host_iterated(cfg, plan, strategy)
    restore_iterator = checkpoint_iterator and manager.latest_checkpoint is not None and any(
        name.startswith(INPUT_ITERATOR + "/") for name, _ in tf.train.list_variables(manager.latest_checkpoint))
    dist_dataset, loaders = make_input(cfg, strategy, start_step, loader_state, plan, augment_on=augment_on,
                                       start_batch_step=0 if restore_iterator else start_step)

    # ---- step ----
    train_step = make_train_step(model, optimizer, strategy, temperature=cfg.train.temperature,
                                 weight_decay=cfg.train.weight_decay, jit_compile=jit,
                                 _test_nonfinite=_test_nonfinite)

    # The run starts here: record its config (resume checks it) and say what it does.
    if is_chief:
        write_json_atomic(os.path.join(workdir, "config.json"), cfg.to_dict())
    progress = Progress("pretrain", total_steps, unit="steps", every_seconds=0,
                        tty=None if cfg.log.progress_bar else False,
                        stream=sys.stdout if is_chief else io.StringIO())
    for line in _describe_run(cfg, plan, strategy, device_type, total_steps, warmup_steps, jit, start_step, workdir,
                              augment_on, engine_why):
        progress.write(line)

    last_saved = {"step": start_step if manager.latest_checkpoint else None, "path": manager.latest_checkpoint,
                  "backbone": None}

    def save(step: int) -> None:
        loader_state_var.assign(json.dumps(loaders[0].state()))
        if step == _test_kill_in_save:
            # Tests: the state a SIGKILL in the middle of manager.save leaves: ckpt-N's files are on disk
            # but the checkpoint-state file does not name them yet.
            ckpt.write(os.path.join(manager.directory, f"ckpt-{step}"))
            os.kill(os.getpid(), signal.SIGKILL)
        what = f"checkpoint {os.path.join(manager.directory, f'ckpt-{step}')}"
        try:
            last_saved["path"] = manager.save(checkpoint_number=step)
            last_saved["step"] = step
            if is_chief:  # the backbone in the official layout beside every checkpoint (README, "The workdir")
                what = f"backbone export {os.path.join(workdir, 'backbone', f'backbone-{step}')}"
                last_saved["backbone"] = save_backbone_snapshot(backbone, os.path.join(workdir, "backbone"), step,
                                                                backbone.cvrl_config, cfg.checkpoint.max_to_keep)
        except (tf.errors.OpError, OSError) as e:
            # TF writes a checkpoint under <prefix>_temp and renames it when complete; the state file naming
            # the latest is updated only after that, so the last complete checkpoint stays the latest.
            shutil.rmtree(os.path.join(manager.directory, f"ckpt-{step}_temp"), ignore_errors=True)
            reason = getattr(e, "message", None) or str(e)
            reason = reason.strip().splitlines()[-1].split("; ")[-1].replace(" [Op:SaveV2]", "")
            kept = (f"the last complete checkpoint, {last_saved['path']} (step {last_saved['step']}), is the one "
                    "a rerun of the same command resumes from" if last_saved["path"] else "no checkpoint was saved")
            raise CheckpointWriteError(f"training stopped at step {step}: could not write the {what} ({reason}); "
                                       f"{kept}") from None

    pending = []  # (step, flags) not yet checked: checking waits for the step, so it happens at log steps

    def check_finite() -> None:
        for step_number, flags in pending:
            bad = [k for k in ("nonfinite_loss", "nonfinite_weights") if float(flags[k]) > 0]
            if bad:
                what = "a non-finite loss or gradient" if bad[0] == "nonfinite_loss" else "non-finite weights"
                kept = (f"the last checkpoint, {last_saved['path']} (step {last_saved['step']}), is unchanged"
                        if last_saved["path"] else "no checkpoint had been saved")
                raise NonFiniteError(f"training stopped at step {step_number}: {what} (nothing was saved after "
                                     f"that step; {kept})")
        pending.clear()

    # ---- loop ----
    writer = (tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
              if cfg.log.tensorboard and is_chief else tf.summary.create_noop_writer())
    stop_at = total_steps if not cfg.train.stop_after_steps else min(total_steps, start_step + cfg.train.stop_after_steps)
    clips_per_step = 2 * cfg.train.global_batch_size
    iterator = iter(dist_dataset)
    if checkpoint_iterator:
        _attach_input_iterator(ckpt, iterator.iterator)
        if restore_iterator:
            restore_status.assert_existing_objects_matched()  # the iterator was restored, too
    agree = make_stop_agreement(strategy) if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) else None
    log_graph_skips = None
    if plan.kind == "files" and cfg.data.engine == "graph" and not cfg.data.service_address:
        from .tf_ops import log_new_skips as log_graph_skips
    step, metrics, interrupted = start_step, {}, None
    window_start, window_steps, window_wait = time.perf_counter(), 0, 0.0
    try:
        with Interrupts() as signals, writer.as_default():
            while step < stop_at:
                t0 = time.perf_counter()
                try:
                    batch = next(iterator)
                except tf.errors.OpError as e:
                    if log_graph_skips:
                        log_graph_skips()
                    reason = _loader_failure(e)
                    if reason is None:
                        raise
                    raise InputError(f"training stopped at step {step + 1}: data.sources: {reason}") from None
                window_wait += time.perf_counter() - t0
                if log_graph_skips:
                    log_graph_skips()  # the graph op's skips, through Python logging as the loader's
                with tf.profiler.experimental.Trace("train_step", step_num=step, _r=1):  # NVTX range on GPU
                    out = train_step(batch)
                step += 1
                global_step.assign(step)
                for ld in loaders:
                    ld.step = step
                window_steps += 1
                pending.append((step, {k: out.pop(k) for k in ("nonfinite_loss", "nonfinite_weights")}))
                log_now = step % cfg.log.every_steps == 0 or step == stop_at
                save_now = step % cfg.checkpoint.every_steps == 0 or step == stop_at
                if log_now:
                    check_finite()
                    metrics = {k: float(v) for k, v in out.items()}  # float() waits for the step
                    elapsed = time.perf_counter() - window_start
                    metrics["learning_rate"] = float(schedule(step - 1))
                    metrics["clips_per_second"] = clips_per_step * window_steps / elapsed
                    metrics["steps_per_second"] = window_steps / elapsed
                    metrics["input_wait_seconds_per_step"] = window_wait / window_steps
                    for k, v in metrics.items():
                        write_scalar(k, v, step)
                    progress.update(step, loss=metrics["loss"], acc=metrics["contrastive_accuracy"],
                                    lr=metrics["learning_rate"], **{"clips/s": metrics["clips_per_second"]},
                                    input_wait_ms=1e3 * metrics["input_wait_seconds_per_step"])
                    window_start, window_steps, window_wait = time.perf_counter(), 0, 0.0
                # Multi-worker: agree on stopping only at log steps (an extra collective, and a host sync).
                stop = (signals.received is not None if agree is None else
                        log_now and agree(signals.received is not None))
                if stop:
                    check_finite()
                    interrupted = signals.received or "another worker's signal"
                    save(step)
                    progress.write(f"pretrain: {interrupted}: saved {last_saved['path']} at step {step}; "
                                   "run the same command again to resume")
                    break
                if save_now:
                    check_finite()
                    save(step)
            writer.flush()
    finally:
        progress.close()
        del iterator  # closes the input pipeline (and the C++ loader) now, not at interpreter exit
    seconds = time.perf_counter() - t_start
    skipped = sorted({tuple(x) for st in loaders[0].pipeline_stats for x in st.get("skipped", [])})
    if plan.kind == "files" and cfg.data.engine == "graph" and not cfg.data.service_address:
        skipped = graph_skipped_sources(cfg)
    result = TrainResult(model=model, backbone=backbone, step=step, total_steps=total_steps, metrics=metrics,
                         interrupted=interrupted is not None, checkpoint_path=last_saved["path"],
                         start_step=start_step, backbone_path=last_saved["backbone"], seconds=seconds)
    summary = {"step": step, "total_steps": total_steps, "start_step": start_step,
               "interrupted": result.interrupted, "signal": interrupted, "checkpoint": result.checkpoint_path,
               "backbone": result.backbone_path, "seconds": seconds,
               "skipped": [{"source": src, "reason": why} for src, why in skipped], **metrics}
    write_json_atomic(os.path.join(workdir, "summary.json" if is_chief else f"summary_worker{worker_index}.json"),
                      summary)
    if is_chief and not interrupted:
        ran = step - start_step
        rate = f", {ran / seconds:.2f} steps/s" if ran else ""
        final = f"loss {metrics['loss']:.4f}, " if "loss" in metrics else ""
        unread = (f"; skipped {len(skipped)} of {plan.num_sources} videos that do not decode (listed in "
                  f"summary.json)" if skipped else "")
        print(f"pretrain: done: step {step}/{total_steps} ({ran} this run{rate}); {final}checkpoint "
              f"{result.checkpoint_path}; backbone {result.backbone_path}{unread}", flush=True)
    return result


def main_pretrain(cfg: Config, workdir: str) -> int:
    """`cvrl-fast pretrain` body: train, then exit 0 (also after a signal: the run saved and can resume)."""
    train(cfg, workdir)
    return 0
