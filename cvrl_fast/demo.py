"""`make demo`: the whole CVRL pipeline on a small embedded dataset, with an honest scoreboard.

1. data: generated motion-class videos (`cvrl_fast.demo_data`), encoded to mp4 by the ffmpeg CLI;
2. pretraining: the trainer (`cvrl_fast.trainer`) fed by the C++ pair loader, progress bar, TensorBoard;
3. linear evaluation (`cvrl_fast.evaluation`) of the pretrained backbone, loaded back from the official
   checkpoint layout it was saved in, and of the same architecture at random initialisation;
4. a table, PNGs (curves and a contact sheet of augmented pairs) and the last line
   `demo: pretrained top-1 X% vs random-init top-1 Y% on N held-out videos in M min`.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import time

import numpy as np

from .configs import Config, load_config


def _scale_down(cfg: Config) -> None:
    """--quick: a seconds-long smoke run of every stage (tests); the numbers mean nothing."""
    cfg.dataset.num_train, cfg.dataset.num_val, cfg.dataset.num_frames = 8, 4, 30
    cfg.dataset.size = 32
    p = cfg.pretrain
    p.data.image_size, p.data.num_frames = 32, 4
    p.train.global_batch_size = 4
    p.train.epochs, p.train.warmup_epochs = 1.0, 0.5
    p.log.every_steps, p.checkpoint.every_steps = 1, 100
    p.log.progress_bar = False
    e = cfg.eval
    e.clip_frames, e.crop_size, e.test_short_side, e.test_crop_size = 4, 32, 32, 32
    e.num_test_clips, e.epochs, e.warmup_epochs, e.train_views, e.batch_size = 2, 3.0, 1.0, 1, 4


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from the TensorBoard event files the trainer wrote."""
    import tensorflow as tf

    from tensorflow.core.util import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        # An event file is a TFRecord file of Event protos (tf.compat.v1.train.summary_iterator is deprecated).
        for raw in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(raw.numpy())
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((int(event.step), float(tf.make_ndarray(value.tensor))))
    return out


def contact_sheet(paths, aug_config, out_png: str, seed: int = 0, num_videos: int = 4, frames_shown: int = 4) -> None:
    """PNG grid: per video, `frames_shown` frames of view 1 then of view 2 (one row per video)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._loader import sample_pair

    rows = []
    for i, path in enumerate(paths[:num_videos]):
        v1, v2 = sample_pair(path, seed, aug_config, index=i)
        step = max(1, v1.shape[0] // frames_shown)
        rows.append(np.concatenate(list(v1[::step][:frames_shown]) + list(v2[::step][:frames_shown]), axis=1))
    grid = np.concatenate(rows, axis=0)
    fig, ax = plt.subplots(figsize=(grid.shape[1] / 40, grid.shape[0] / 40 + 0.6))
    ax.imshow(grid)
    ax.set_axis_off()
    ax.set_title(f"augmented pairs: {frames_shown} frames of view 1 | view 2, one video per row", fontsize=8)
    fig.savefig(out_png, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_curves(scalars: dict, probe_losses: dict, out_png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, tag, title in ((axes[0], "loss", "pretraining loss (NT-Xent + wd)"),
                           (axes[1], "contrastive_accuracy", "contrastive accuracy")):
        if tag in scalars:
            steps, values = zip(*scalars[tag])
            ax.plot(steps, values)
        ax.set_title(title)
        ax.set_xlabel("step")
    for name, history in probe_losses.items():
        axes[2].plot(range(1, len(history) + 1), history, label=name)
    axes[2].set_title("linear probe training loss")
    axes[2].set_xlabel("epoch")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def _percent(value: float) -> str:
    """A table cell: NaN is a metric that does not apply (top-5 of 5 classes or fewer)."""
    return "n/a" if value != value else f"{100 * value:.1f}%"


def _start_afresh_unless_same_config(run_dir: str, cfg: Config) -> None:
    """The demo owns its workdir: a pretraining run left there by another config (an older demo, other
    overrides) is removed so the trainer starts afresh, instead of refusing to resume it. The same config
    resumes (a killed demo continues where it stopped)."""
    if not os.path.isdir(run_dir):
        return
    from .trainer import config_differences

    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            same = not config_differences(json.load(f), cfg)
    except (OSError, ValueError):  # never started, or killed before it wrote its config
        same = False
    if not same:
        print(f"demo: {run_dir} holds a run of another config; starting it afresh", flush=True)
        shutil.rmtree(run_dir)


def run_demo(workdir: str = "demo_work", *, quick: bool = False, config: str = "demo",
             overrides=()) -> dict:
    t_start = time.time()
    import keras

    from . import checkpoints, demo_data, evaluation, models, trainer

    cfg = load_config(config, overrides)
    if quick:
        _scale_down(cfg)
        workdir = os.path.join(workdir, "quick")  # a smoke run never mixes its files with a full run's
    os.makedirs(workdir, exist_ok=True)

    # ---- data ----
    d = cfg.dataset
    print(f"demo: writing {d.num_train} + {d.num_val} videos ({len(demo_data.CLASSES)} motion classes: "
          f"{', '.join(demo_data.CLASSES)}) to {workdir}/data", flush=True)
    lists = demo_data.make_dataset(os.path.join(workdir, "data"), num_train=d.num_train, num_val=d.num_val,
                                   seed=d.seed, size=d.size, num_frames=d.num_frames,
                                   segment_frames=d.segment_frames, look_pool=d.look_pool)
    train_paths, train_labels, _ = evaluation.read_labelled_sources(str(lists["train"]))
    val_paths, val_labels, _ = evaluation.read_labelled_sources(str(lists["val"]))
    num_classes = len(demo_data.CLASSES)

    # ---- pretraining ----
    p = cfg.pretrain
    p.data.sources = (str(lists["train"]),)
    aug = trainer.augment_config(p)
    contact_sheet(train_paths, aug, os.path.join(workdir, "augmented_pairs.png"), seed=p.data.seed)
    print("demo: CVRL pretraining", flush=True)
    pretrain_dir = os.path.join(workdir, "pretrain")
    _start_afresh_unless_same_config(pretrain_dir, p)
    t0 = time.time()
    result = trainer.train(p, pretrain_dir)
    pretrain_seconds = time.time() - t0
    bcfg = models.BackboneConfig(depth=p.model.depth, width_multiplier=p.model.width_multiplier,
                                 bn_synchronized=False)
    ckpt = result.backbone_path  # the trainer's export in the official layout (pretrain/backbone/)

    # ---- linear evaluation: pretrained vs random init ----
    ecfg = load_config("linear_eval").eval
    for key, value in cfg.eval.flat_items():
        ecfg.override(key, value)
    print("demo: linear evaluation of the pretrained backbone", flush=True)
    pretrained = checkpoints.load_official_backbone(ckpt, config=bcfg)
    r_pre = evaluation.linear_eval(pretrained, train_paths, train_labels, val_paths, val_labels, num_classes, ecfg)
    print("demo: linear evaluation of the same backbone at random initialisation", flush=True)
    keras.utils.set_random_seed(p.runtime.seed)
    r_rand = evaluation.linear_eval(models.build_backbone(bcfg), train_paths, train_labels, val_paths, val_labels,
                                    num_classes, ecfg)

    # ---- report ----
    scalars = read_scalars(os.path.join(workdir, "pretrain", "tensorboard"))
    plot_curves(scalars, {"pretrained": r_pre["loss_history"], "random init": r_rand["loss_history"]},
                os.path.join(workdir, "curves.png"))
    steps_run = result.step - result.start_step  # a rerun resumes: only this invocation's steps are timed
    pairs_per_second = steps_run * p.train.global_batch_size / max(pretrain_seconds, 1e-9)
    steps_per_second = steps_run / max(pretrain_seconds, 1e-9)
    minutes = (time.time() - t_start) / 60
    table = [
        ("backbone", "top-1", "top-5"),
        ("CVRL pretrained", f"{100 * r_pre['top1']:.1f}%", _percent(r_pre["top5"])),
        ("random init", f"{100 * r_rand['top1']:.1f}%", _percent(r_rand["top5"])),
    ]
    print()
    for row in table:
        print(f"  {row[0]:<18}{row[1]:>8}{row[2]:>8}")
    if steps_run:
        print(f"  pretraining: {steps_run} steps, {steps_per_second:.2f} steps/s, {pairs_per_second:.1f} pairs/s "
              f"(loader + train step, end to end), {pretrain_seconds / 60:.1f} min")
    else:
        print(f"  pretraining: complete already in {pretrain_dir} ({result.step} steps); not run again")
    print(f"  files: {workdir}/curves.png, {workdir}/augmented_pairs.png, {workdir}/pretrain/tensorboard/, {ckpt}")
    print(f"demo: pretrained top-1 {100 * r_pre['top1']:.1f}% vs random-init top-1 {100 * r_rand['top1']:.1f}% "
          f"on {len(val_paths)} held-out videos in {minutes:.1f} min", flush=True)
    return {"pretrained_top1": r_pre["top1"], "random_top1": r_rand["top1"], "num_val": len(val_paths),
            "minutes": minutes, "steps": result.step, "pairs_per_second": pairs_per_second}
