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
import json
import logging
import os
import signal
import time

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from . import models
from .checkpoints import load_official_backbone, save_official_backbone  # noqa: F401  (re-exported)
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
            raise ValueError(f"checkpointed loader state {state!r} is not from data.source={self.source!r}")
        self.step = int(state["next_step"])


def make_input(cfg: Config, strategy, start_step: int, loader_state: dict | None):
    """(distributed dataset, loader objects with state()/restore()).

    `data.source == "synthetic"` uses `synthetic_pretrain_dataset`; anything else reads `data.sources`
    with `cvrl_fast.data.pretrain_dataset` (the C++ pair loader), started at batch `start_step`.
    """
    global_batch = cfg.train.global_batch_size
    if global_batch % strategy.num_replicas_in_sync:
        raise ValueError(f"train.global_batch_size={global_batch} is not divisible by the "
                         f"{strategy.num_replicas_in_sync} replicas")
    if cfg.data.source != "synthetic" and not cfg.data.sources:
        raise ValueError(f"data.source={cfg.data.source!r} needs data.sources (video files or globs)")
    loader = StepLoaderState(cfg.data.source, start_step)
    if loader_state is not None:
        loader.restore(loader_state)
        if loader.step != start_step:
            raise ValueError(f"checkpointed loader position {loader.step} != checkpointed global step {start_step}")

    def dataset_fn(ctx: tf.distribute.InputContext):
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        if cfg.data.source == "synthetic":
            ds = synthetic_pretrain_dataset(
                per_replica_batch=per_replica, global_batch=global_batch, num_frames=cfg.data.num_frames,
                image_size=cfg.data.image_size, seed=cfg.data.seed, start_step=start_step, input_context=ctx)
        else:
            from . import data  # lazy: the C++ loader

            augment = augment_config(cfg)
            # batch_size is the GLOBAL batch; the loader shards by ctx and yields per-replica batches, so
            # a pipeline feeding k local replicas has delivered k batches per step.
            local_replicas = ctx.num_replicas_in_sync // ctx.num_input_pipelines
            ds = data.pretrain_dataset(list(cfg.data.sources), batch_size=global_batch, seed=cfg.data.seed,
                                       input_context=ctx, config=augment, start_batch=start_step * local_replicas)
        return ds.prefetch(cfg.data.prefetch)

    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    dist = strategy.distribute_datasets_from_function(dataset_fn, options)
    return dist, [loader]


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


def schedule_steps(cfg: Config) -> tuple[int, int]:
    """(total steps D, warmup steps W) from epochs, the reference video count and the global batch."""
    per_epoch = cfg.data.num_train_videos / cfg.train.global_batch_size
    total = cfg.train.total_steps or steps_for_epochs(cfg.train.epochs, cfg.data.num_train_videos,
                                                      cfg.train.global_batch_size)
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
def make_train_step(model: keras.Model, optimizer, strategy, *, temperature: float, weight_decay: float,
                    jit_compile: bool = False):
    """Return `train_step(per_replica_batch) -> dict of replica-averaged metrics` (a tf.function)."""
    num_replicas = strategy.num_replicas_in_sync
    kernels = models.kernel_variables(model)
    variables = model.trainable_variables
    loss_scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def replica_step(batch):
        # uint8 -> [0, 1] float32 on the device; both views in one forward pass so BN sees 2b clips.
        views = tf.concat([batch["view1"], batch["view2"]], axis=0)
        frames = tf.cast(views, tf.float32) / 255.0
        with tf.GradientTape() as tape:
            z = model(frames, training=True)
            z1, z2 = tf.split(z, 2, axis=0)
            contrastive, metrics = nt_xent_loss(z1, z2, temperature, return_metrics=True)
            regularization = weight_decay_loss(kernels, weight_decay)
            loss = contrastive + regularization
            # 1/R here + the optimizer's cross-replica gradient SUM = gradient of the global mean.
            objective = loss / num_replicas
            if loss_scaling:
                objective = optimizer.scale_loss(objective)
        grads = tape.gradient(objective, variables)
        optimizer.apply(grads, variables)
        return {"loss": loss, "contrastive_loss": contrastive, "regularization_loss": regularization, **metrics}

    if jit_compile:
        # XLA compiles the per-replica computation (as Keras' own fit does under a strategy).
        replica_step = tf.function(replica_step, jit_compile=True)

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

    return train_step


# ================================================================================================
# checkpoint
# ================================================================================================
class _Sigterm:
    """Turns SIGTERM into a flag the loop checks after each step (save, then exit cleanly)."""

    def __init__(self):
        self.received = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.received = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


def write_scalar(name: str, value: float, step: int) -> None:
    """A TensorBoard scalar via core TF's tf.summary.write, so the `tensorboard` package is not needed
    to write logs (tf.summary.scalar lives in it). The metadata marks it for the scalars plugin."""
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=metadata)


def make_stop_agreement(strategy):
    """`agree(flag) -> bool`: under MultiWorkerMirroredStrategy, whether ANY worker got SIGTERM (an all-reduce),
    so every worker leaves the loop after the same step instead of one waiting forever in a collective.
    Elsewhere the local flag."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return lambda flag: flag

    @tf.function
    def total(x):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.identity(x)), axis=None)

    return lambda flag: float(total(tf.constant(1.0 if flag else 0.0))) > 0


def checkpoint_dir(workdir: str, worker_index: int, is_chief: bool) -> str:
    # Every worker must call save() under MultiWorkerMirroredStrategy; only the chief's copy is the
    # run's checkpoint. Each worker keeps its own copy because loader state is per worker.
    return os.path.join(workdir, "checkpoints" if is_chief else f"checkpoints_worker{worker_index}")


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


def train(cfg: Config, workdir: str) -> TrainResult:
    """Pretrain per `cfg` in `workdir`, resuming from its latest checkpoint if there is one."""
    os.makedirs(workdir, exist_ok=True)
    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _train(cfg, workdir)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(cfg: Config, workdir: str) -> TrainResult:
    # ---- setup ----
    # The strategy comes first: MultiWorkerMirroredStrategy must configure collectives before anything
    # else initialises the TF runtime.
    strategy = make_strategy(cfg.runtime.strategy, cfg.runtime.tpu)
    if cfg.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.runtime.seed)
    set_precision(cfg.runtime.precision)
    jit = resolve_jit_compile(cfg.runtime.jit_compile)
    worker_index, is_chief = _task_info(strategy)
    total_steps, warmup_steps = schedule_steps(cfg)
    if is_chief:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(cfg.to_dict(), f, indent=1, default=list)

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
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        saved = loader_state_var.numpy().decode()
        loader_state = json.loads(saved) if saved else None
        log.info("resumed from %s at step %d", manager.latest_checkpoint, int(global_step.numpy()))
    start_step = int(global_step.numpy())

    # ---- input ----
    dist_dataset, loaders = make_input(cfg, strategy, start_step, loader_state)

    # ---- step ----
    train_step = make_train_step(model, optimizer, strategy, temperature=cfg.train.temperature,
                                 weight_decay=cfg.train.weight_decay, jit_compile=jit)

    def save(step: int) -> str:
        loader_state_var.assign(json.dumps(loaders[0].state()))
        return manager.save(checkpoint_number=step)

    # ---- loop ----
    writer = (tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
              if cfg.log.tensorboard and is_chief else tf.summary.create_noop_writer())
    progbar = (keras.utils.Progbar(total_steps, stateful_metrics=["loss", "acc", "clips/s"])
               if cfg.log.progress_bar and is_chief else None)
    stop_at = total_steps if not cfg.train.stop_after_steps else min(total_steps, start_step + cfg.train.stop_after_steps)
    clips_per_step = 2 * cfg.train.global_batch_size
    iterator = iter(dist_dataset)
    agree = make_stop_agreement(strategy) if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) else None
    step, metrics, interrupted, path = start_step, {}, False, manager.latest_checkpoint
    window_start, window_steps, window_wait = time.perf_counter(), 0, 0.0
    with _Sigterm() as sigterm, writer.as_default():
        while step < stop_at:
            t0 = time.perf_counter()
            batch = next(iterator)
            window_wait += time.perf_counter() - t0
            with tf.profiler.experimental.Trace("train_step", step_num=step, _r=1):  # NVTX range on GPU
                out = train_step(batch)
            step += 1
            global_step.assign(step)
            for ld in loaders:
                ld.step = step
            window_steps += 1
            if step % cfg.log.every_steps == 0 or step == stop_at:
                metrics = {k: float(v) for k, v in out.items()}  # float() waits for the step
                elapsed = time.perf_counter() - window_start
                metrics["learning_rate"] = float(schedule(step - 1))
                metrics["clips_per_second"] = clips_per_step * window_steps / elapsed
                metrics["steps_per_second"] = window_steps / elapsed
                metrics["input_wait_seconds_per_step"] = window_wait / window_steps
                for k, v in metrics.items():
                    write_scalar(k, v, step)
                log.info("step %d/%d loss %.4f acc %.3f lr %.3g clips/s %.1f input wait %.1f ms/step", step,
                         total_steps, metrics["loss"], metrics["contrastive_accuracy"], metrics["learning_rate"],
                         metrics["clips_per_second"], 1e3 * metrics["input_wait_seconds_per_step"])
                if progbar is not None:
                    progbar.update(step, [("loss", metrics["loss"]), ("acc", metrics["contrastive_accuracy"]),
                                          ("clips/s", metrics["clips_per_second"])])
                window_start, window_steps, window_wait = time.perf_counter(), 0, 0.0
            # Multi-worker: agree on stopping only at log steps (an extra collective, and a host sync).
            if (sigterm.received if agree is None else
                    (step % cfg.log.every_steps == 0 or step == stop_at) and agree(sigterm.received)):
                path = save(step)
                interrupted = True
                log.warning("SIGTERM: saved %s at step %d, exiting", path, step)
                break
            if step % cfg.checkpoint.every_steps == 0 or step == stop_at:
                path = save(step)
        writer.flush()
    return TrainResult(model=model, backbone=backbone, step=step, total_steps=total_steps, metrics=metrics,
                       interrupted=interrupted, checkpoint_path=path)


def main_pretrain(config_path: str, overrides, workdir: str) -> int:
    """`cvrl-fast pretrain` body."""
    cfg = load_config(config_path, overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = train(cfg, workdir)
    summary = {"step": result.step, "total_steps": result.total_steps, "interrupted": result.interrupted,
               "checkpoint": result.checkpoint_path, **result.metrics}
    print(json.dumps(summary), flush=True)
    return 0
