"""Linear evaluation, fine-tuning and feature extraction of CVRL backbones (cvrl.md §6).

Reads top to bottom: sources and labels, clip input (train clip, 30 test views), features, the linear
head, the 30-view test, fine-tuning, extraction, and the command-line entry points.

Choices where the reference is silent (also in the README):
- Test frames are resized to short side 256 in float (bilinear, half-pixel, no antialias) and rounded
  back to uint8 before the crops, to keep 320 frames per video in memory at 1 byte per value.
- Linear evaluation computes backbone features of `train_views` augmented clips per training video and
  trains the head on them; epoch e uses view e mod train_views. The backbone is frozen and its BN is in
  inference mode, so with train_views = epochs (the default config) this is the reference's procedure
  exactly (a new random clip per video and epoch); fewer views trade augmentation variety for time.
- Extracted features are the mean over the 30 test views of the pooled (not normalised) res5 feature.
"""
from __future__ import annotations

import concurrent.futures
import csv
import glob
import json
import math
import os
import time
from typing import Callable, Iterable, Sequence

import numpy as np

from . import _eval_views as views
from ._C import fixed_rate_frame_map
from ._loader import VIDEO_EXTENSIONS, _is_tfrecord, read_list_file
from ._video import VideoReader, decode_jpeg_frames


# ================================================================================================
# Sources and labels
# ================================================================================================
def read_labelled_sources(spec: str | Sequence[str]) -> tuple[list[str], list[int], list[str]]:
    """(paths, labels, class_names) from a CSV/TXT list, a directory, a glob, or a list of paths.

    - CSV/TXT: one video per line, `path,label` or `path label`; a header line is skipped; relative paths
      are relative to the list file; a line without a label gets label -1.
    - A directory with class sub-directories: labels are the sorted sub-directory names' indices.
    - A directory of videos, a glob or a list of paths: label -1 (unlabelled).
    - Reference-format TFRecord files (a path or a glob): one item `file#n` per record, labelled by its
      first `clip/label/index`.
    Labels written as integers are used as is; otherwise class names are mapped to sorted indices.
    """
    if isinstance(spec, (list, tuple)):
        paths = [str(p) for p in spec]
        return paths, [-1] * len(paths), []
    spec = str(spec)
    if os.path.isdir(spec):
        subdirs = sorted(d for d in os.listdir(spec) if os.path.isdir(os.path.join(spec, d)))
        if subdirs:
            paths, labels = [], []
            for label, name in enumerate(subdirs):
                for f in sorted(os.listdir(os.path.join(spec, name))):
                    if f.lower().endswith(VIDEO_EXTENSIONS):
                        paths.append(os.path.join(spec, name, f))
                        labels.append(label)
            if not paths:
                raise ValueError(f"{spec}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in its class sub-directories")
            return paths, labels, subdirs
        paths = sorted(os.path.join(spec, f) for f in os.listdir(spec) if f.lower().endswith(VIDEO_EXTENSIONS))
        if not paths:
            raise ValueError(f"{spec}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in this directory")
        return paths, [-1] * len(paths), []
    if spec.lower().endswith((".csv", ".txt")):
        return _read_list_file(spec)
    if _is_tfrecord(spec) and os.path.isfile(spec):
        return _read_tfrecord_labels([spec])
    paths = sorted(glob.glob(spec))
    if paths and all(_is_tfrecord(p) for p in paths):
        return _read_tfrecord_labels(paths)
    if not paths:
        raise ValueError(f"{spec}: not a directory, list file (.csv/.txt) or glob matching any file")
    return paths, [-1] * len(paths), []


def _read_tfrecord_labels(files: Sequence[str]) -> tuple[list[str], list[int], list[str]]:
    """One item `file#record` per SequenceExample, labelled by its first `clip/label/index` (-1 if none)."""
    import tensorflow as tf

    paths, labels = [], []
    for f in files:
        for i, raw in enumerate(tf.data.TFRecordDataset(f)):
            ex = tf.train.SequenceExample.FromString(raw.numpy())
            value = ex.context.feature["clip/label/index"].int64_list.value
            paths.append(f"{f}#{i}")
            labels.append(int(value[0]) if len(value) else -1)
    if not paths:
        raise ValueError(f"{files[0]}: the TFRecord file holds no records")
    return paths, labels, []


def _read_list_file(path: str) -> tuple[list[str], list[int], list[str]]:
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such list file")
    rows = read_list_file(path)
    if not rows:
        raise ValueError(f"{path}: the list has no videos")
    paths = [p for _, p, _ in rows]
    raw_labels = [fields[-1] if fields else None for _, _, fields in rows]
    if all(lbl is None for lbl in raw_labels):
        return paths, [-1] * len(paths), []
    if any(lbl is None for lbl in raw_labels):
        missing = next(i for i, lbl in enumerate(raw_labels) if lbl is None)
        raise ValueError(f"{path}: line {rows[missing][0]} has no label while other lines do")
    try:
        labels = [int(lbl) for lbl in raw_labels]
        return paths, labels, []
    except ValueError:
        names = sorted(set(raw_labels))
        return paths, [names.index(lbl) for lbl in raw_labels], names


# ================================================================================================
# Clip input
# ================================================================================================
class IndexedVideo:
    """A video in the fixed-rate index space (cvrl.md §7.2): index i is the frame shown at pts0 + i/fps."""

    def __init__(self, path: str, target_fps: float | None = 25.0):
        self.path = path
        self.reader = VideoReader(path)
        self.frame_map = np.asarray(
            fixed_rate_frame_map(list(self.reader.frame_pts_seconds), float(target_fps or 0.0)), np.int64)
        self.num_frames = len(self.frame_map)
        if self.num_frames == 0:
            raise ValueError(f"{path}: no decodable frames")
        self.height, self.width = self.reader.height, self.reader.width

    def clip(self, indices: np.ndarray, crop: Sequence[int] | None = None) -> np.ndarray:
        """uint8 [len(indices), H, W, 3]; each decoded frame is decoded and converted once."""
        decoded = self.frame_map[np.asarray(indices, np.int64)]
        unique, inverse = np.unique(decoded, return_inverse=True)
        frames = self.reader.get_frames(unique, crop=crop)
        return frames[inverse]


class IndexedRecord:
    """A reference-format TFRecord video (`file#record`): one JPEG per stored frame, native index space."""

    def __init__(self, item: str):
        import tensorflow as tf

        path, _, record = item.rpartition("#")
        self.path = item
        raw = next(iter(tf.data.TFRecordDataset(path).skip(int(record)).take(1)), None)
        if raw is None:
            raise ValueError(f"{path}: no record {record}")
        ex = tf.train.SequenceExample.FromString(raw.numpy())
        self.jpegs = [f.bytes_list.value[0] for f in ex.feature_lists.feature_list["image/encoded"].feature]
        self.num_frames = len(self.jpegs)
        if self.num_frames == 0:
            raise ValueError(f"{item}: the record has no image/encoded frames")
        self.height, self.width = decode_jpeg_frames(self.jpegs[:1]).shape[1:3]

    def clip(self, indices: np.ndarray, crop: Sequence[int] | None = None) -> np.ndarray:
        unique, inverse = np.unique(np.asarray(indices, np.int64), return_inverse=True)
        frames = decode_jpeg_frames([self.jpegs[i] for i in unique], dct_method="INTEGER_FAST")
        if crop is not None:
            x, y, w, h = crop
            frames = frames[:, y:y + h, x:x + w]
        return np.ascontiguousarray(frames[inverse])


def open_source(item: str, target_fps: float | None = 25.0):
    """A video file in the fixed-rate index space, or a TFRecord record (`file#n`) in its stored frames."""
    path = item.rpartition("#")[0]
    if path and _is_tfrecord(path):
        return IndexedRecord(item)
    return IndexedVideo(item, target_fps)


def _resize_bilinear(frames: np.ndarray, height: int, width: int, truncate: bool):
    """TF bilinear resize (half-pixel centres, no antialias) to uint8: truncated (training parity) or rounded."""
    import tensorflow as tf

    if frames.shape[1:3] == (height, width):
        return frames
    out = tf.image.resize(tf.convert_to_tensor(frames, tf.float32), (height, width), "bilinear", antialias=False)
    out = tf.clip_by_value(out if truncate else tf.round(out), 0.0, 255.0)
    return tf.cast(out, tf.uint8).numpy()


def train_clip(video: IndexedVideo | IndexedRecord, cfg, seed: int, epoch: int, index: int) -> np.ndarray:
    """One linear-eval / fine-tune training clip (cvrl.md §6.1): uint8 [T, S, S, 3], a pure function of its seeds.

    Start UniformInt over the valid range, the crop box drawn by TF's own
    `stateless_sample_distorted_bounding_box` (area [0.3, 1], aspect [0.5, 2], 100 attempts, whole-frame
    fallback), only the box decoded, bilinear resize truncated to uint8, horizontal flip with p = 0.5.
    """
    import tensorflow as tf

    rng = np.random.default_rng([seed, epoch, index])
    start = views.train_clip_start(video.num_frames, rng, cfg.clip_frames, cfg.frame_stride)
    indices = views.clip_indices(start, video.num_frames, cfg.clip_frames, cfg.frame_stride)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_size=[video.height, video.width, 3],
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=rng.integers(0, 2**31 - 1, size=2),
        min_object_covered=0.1, aspect_ratio_range=tuple(cfg.aspect_ratio_range),
        area_range=tuple(cfg.area_range), max_attempts=100, use_image_if_no_bounding_boxes=True)
    y, x = int(begin[0]), int(begin[1])
    h, w = int(size[0]), int(size[1])
    frames = video.clip(indices, crop=(x, y, w, h))
    frames = _resize_bilinear(frames, cfg.crop_size, cfg.crop_size, truncate=True)
    if rng.random() < 0.5:
        frames = frames[:, :, ::-1]
    return np.ascontiguousarray(frames)


def test_views(video: IndexedVideo | IndexedRecord, cfg) -> np.ndarray:
    """The 30 test views (cvrl.md §6.1): uint8 [num_test_clips * 3, T, C, C, 3], clip-major."""
    starts = views.test_clip_starts(video.num_frames, cfg.num_test_clips, cfg.clip_frames, cfg.frame_stride)
    indices = np.concatenate([views.clip_indices(int(s), video.num_frames, cfg.clip_frames, cfg.frame_stride)
                              for s in starts])
    frames = video.clip(indices)
    h, w = views.short_side_size(video.height, video.width, cfg.test_short_side)
    frames = _resize_bilinear(frames, h, w, truncate=False)
    c = cfg.test_crop_size
    clips = frames.reshape(len(starts), cfg.clip_frames, h, w, 3)
    out = [clips[:, :, y:y + c, x:x + c] for (y, x) in views.three_crop_offsets(h, w, c)]
    return np.ascontiguousarray(np.stack(out, axis=1).reshape(-1, cfg.clip_frames, c, c, 3))


def _parallel_map(fn: Callable, items: Iterable, num_threads: int):
    """Ordered map over a thread pool (decode releases the GIL); at most 2*num_threads items in flight."""
    items = list(items)
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
        pending = []
        for i, item in enumerate(items):
            pending.append(pool.submit(fn, item))
            if len(pending) > 2 * num_threads:
                yield pending.pop(0).result()
        for f in pending:
            yield f.result()


# ================================================================================================
# Features
# ================================================================================================
def _pool_fn(backbone):
    import tensorflow as tf

    @tf.function(reduce_retracing=True, autograph=False)  # no Python control flow to convert
    def pooled(clips_uint8):
        x = tf.cast(clips_uint8, tf.float32) / 255.0
        return tf.cast(tf.reduce_mean(backbone(x, training=False), axis=[1, 2, 3]), tf.float32)

    return pooled


def _pooled_features(pooled, clips: np.ndarray, batch_clips: int) -> np.ndarray:
    return np.concatenate([pooled(clips[i:i + batch_clips]).numpy() for i in range(0, len(clips), batch_clips)])


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def train_features(backbone, paths: Sequence[str], cfg, num_views: int, progress: Callable | None = None):
    """Pooled backbone features of `num_views` augmented training clips per video: [num_views, N, D]."""
    pooled = _pool_fn(backbone)

    def one(job):
        view, i = job
        return train_clip(open_source(paths[i], cfg.target_fps), cfg, cfg.seed, view, i)

    jobs = [(v, i) for v in range(num_views) for i in range(len(paths))]
    feats, batch = [], []
    for clip in _parallel_map(one, jobs, cfg.num_threads):
        batch.append(clip)
        if len(batch) == cfg.batch_clips:
            feats.append(pooled(np.stack(batch)).numpy())
            batch = []
            if progress:
                progress(sum(len(f) for f in feats), len(jobs))
    if batch:
        feats.append(pooled(np.stack(batch)).numpy())
    return np.concatenate(feats).reshape(num_views, len(paths), -1)


def test_features(backbone, paths: Sequence[str], cfg, progress: Callable | None = None) -> np.ndarray:
    """Pooled backbone features of the 30 test views per video: [N, 30, D]."""
    pooled = _pool_fn(backbone)
    out = []
    for k, clips in enumerate(_parallel_map(lambda p: test_views(open_source(p, cfg.target_fps), cfg), paths,
                                            cfg.num_threads)):
        out.append(_pooled_features(pooled, clips, cfg.batch_clips))
        if progress:
            progress(k + 1, len(paths))
    return np.stack(out)


# ================================================================================================
# Linear head (cvrl.md §3.3, §6.1): L2-normalised feature -> Dense, SGD momentum, warmup + cosine
# ================================================================================================
def train_linear_head(features: np.ndarray, labels: np.ndarray, num_classes: int, cfg):
    """Train Dense(num_classes) on L2-normalised features [V, N, D]; epoch e uses view e mod V.

    Returns (kernel [D, C], bias [C], per-epoch mean loss list).
    """
    import keras
    import tensorflow as tf

    from .schedules import WarmupCosine, scaled_learning_rate, warmup_steps_for

    num_views, n, dim = features.shape
    feats = _l2_normalize(features).astype(np.float32)
    labels = np.asarray(labels, np.int64)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    batch = min(cfg.batch_size, n)
    steps_per_epoch = math.ceil(n / batch)
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    warmup = warmup_steps_for(total, int(round(cfg.warmup_epochs * steps_per_epoch)))
    lr = scaled_learning_rate(cfg.learning_rate, batch, cfg.base_batch_size)
    keras.utils.set_random_seed(cfg.seed)
    dense = keras.layers.Dense(num_classes, name="classifier")
    dense.build((None, dim))
    optimizer = keras.optimizers.SGD(WarmupCosine(lr, total, warmup), momentum=0.9, nesterov=False)

    @tf.function(autograph=False)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, dense(x)))
        optimizer.apply_gradients(zip(tape.gradient(loss, dense.trainable_variables), dense.trainable_variables))
        return loss

    rng = np.random.default_rng(cfg.seed)
    history = []
    for epoch in range(int(math.ceil(cfg.epochs))):
        order = rng.permutation(n)
        view = feats[epoch % num_views]
        losses = [float(step(view[order[i:i + batch]], labels[order[i:i + batch]]))
                  for i in range(0, n, batch)]
        history.append(float(np.mean(losses)))
    return dense.kernel.numpy(), dense.bias.numpy(), history


def view_probabilities(test_feats: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Softmax probabilities averaged over the views: [N, V, D] -> [N, C]."""
    logits = _l2_normalize(test_feats) @ kernel + bias
    logits = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs.mean(axis=1)


def topk_accuracy(probs: np.ndarray, labels: Sequence[int], k: int) -> float:
    topk = np.argsort(-probs, axis=-1)[:, :k]
    return float(np.mean([lbl in row for lbl, row in zip(labels, topk)]))


def linear_eval(backbone, train_paths, train_labels, val_paths, val_labels, num_classes: int, cfg,
                progress: Callable | None = None) -> dict:
    """Frozen-backbone linear evaluation; returns metrics and per-video predictions."""
    t0 = time.time()
    num_views = max(1, min(int(cfg.train_views) or int(math.ceil(cfg.epochs)), int(math.ceil(cfg.epochs))))
    tr = train_features(backbone, train_paths, cfg, num_views,
                        progress and (lambda i, n: progress("train features", i, n)))
    kernel, bias, history = train_linear_head(tr, np.asarray(train_labels), num_classes, cfg)
    te = test_features(backbone, val_paths, cfg, progress and (lambda i, n: progress("test views", i, n)))
    probs = view_probabilities(te, kernel, bias)
    return {
        "top1": topk_accuracy(probs, val_labels, 1),
        "top5": topk_accuracy(probs, val_labels, min(5, num_classes)),
        "num_val_videos": len(val_paths),
        "train_views": num_views,
        "loss_history": history,
        "predictions": [
            {"path": p, "label": int(lbl), "pred": int(np.argmax(pr)),
             "top5": [int(c) for c in np.argsort(-pr)[:5]]}
            for p, lbl, pr in zip(val_paths, val_labels, probs)],
        "seconds": time.time() - t0,
        "head": (kernel, bias),
    }


# ================================================================================================
# Fine-tuning (cvrl.md §6.2): backbone trainable, dropout head, SGD Nesterov, L2 on backbone conv kernels
# ================================================================================================
def finetune(backbone, train_paths, train_labels, val_paths, val_labels, num_classes: int, cfg,
             progress: Callable | None = None) -> dict:
    import keras
    import tensorflow as tf

    from .models import kernel_variables
    from .schedules import WarmupCosine, scaled_learning_rate, warmup_steps_for

    keras.utils.set_random_seed(cfg.seed)
    n = len(train_paths)
    batch = min(cfg.batch_size, n)
    steps_per_epoch = math.ceil(n / batch)
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    warmup = warmup_steps_for(total, int(round(cfg.warmup_epochs * steps_per_epoch)))
    dropout = keras.layers.Dropout(cfg.dropout_rate)
    dense = keras.layers.Dense(num_classes, name="classifier")
    dense.build((None, backbone.output_shape[-1]))
    backbone.trainable = True
    conv_kernels = kernel_variables(backbone)
    optimizer = keras.optimizers.SGD(
        WarmupCosine(scaled_learning_rate(cfg.learning_rate, batch, cfg.base_batch_size), total, warmup),
        momentum=0.9, nesterov=True)
    variables = backbone.trainable_variables + dense.trainable_variables

    @tf.function(autograph=False)
    def step(x, y):
        with tf.GradientTape() as tape:
            feats = tf.reduce_mean(backbone(tf.cast(x, tf.float32) / 255.0, training=True), axis=[1, 2, 3])
            logits = dense(dropout(feats, training=True))
            ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, tf.cast(logits, tf.float32)))
            l2 = cfg.weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in conv_kernels])
            loss = ce + l2
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return ce

    labels = np.asarray(train_labels, np.int64)
    history = []
    rng = np.random.default_rng(cfg.seed)
    for epoch in range(int(math.ceil(cfg.epochs))):
        order = rng.permutation(n)
        clips = _parallel_map(lambda i: train_clip(open_source(train_paths[i], cfg.target_fps), cfg, cfg.seed,
                                                   epoch, int(i)), order, cfg.num_threads)
        losses, buf = [], []
        for k, clip in enumerate(clips):
            buf.append(clip)
            if len(buf) == batch or k == n - 1:
                losses.append(float(step(np.stack(buf), labels[order[k + 1 - len(buf):k + 1]])))
                buf = []
        history.append(float(np.mean(losses)))
        if progress:
            progress("finetune epochs", epoch + 1, int(math.ceil(cfg.epochs)))
    backbone.trainable = False
    te = test_features(backbone, val_paths, cfg)
    logits = te @ dense.kernel.numpy() + dense.bias.numpy()  # dropout is off at test time
    logits -= logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    probs = (probs / probs.sum(axis=-1, keepdims=True)).mean(axis=1)
    return {"top1": topk_accuracy(probs, val_labels, 1), "top5": topk_accuracy(probs, val_labels, min(5, num_classes)),
            "loss_history": history, "num_val_videos": len(val_paths)}


# ================================================================================================
# Feature extraction for users of the released checkpoints
# ================================================================================================
def extract_features(backbone, paths: Sequence[str], cfg, progress: Callable | None = None) -> np.ndarray:
    """[N, D]: the mean over the 30 test views of the pooled res5 feature of each video."""
    return test_features(backbone, paths, cfg, progress).mean(axis=1)


# ================================================================================================
# Command-line entry points
# ================================================================================================
def _load_backbone(path: str, model_cfg):
    from . import checkpoints, models

    config = models.BackboneConfig(depth=model_cfg.depth, width_multiplier=model_cfg.width_multiplier,
                                   bn_synchronized=False)
    return checkpoints.load_official_backbone(path, config=config)


def _print_progress(stage: str, i: int, n: int) -> None:
    print(f"\r{stage}: {i}/{n}", end="\n" if i == n else "", flush=True)


def _num_classes(cfg, *label_lists) -> int:
    if cfg.num_classes > 0:
        return int(cfg.num_classes)
    return int(max(max(lbls) for lbls in label_lists)) + 1


def _check_labelled(name: str, spec, labels) -> None:
    if any(lbl < 0 for lbl in labels):
        raise ValueError(f"--{name} {spec}: every video needs a label (CSV/TXT label column or class sub-directories)")


def main_linear_eval(backbone_path: str, train: str, val: str, workdir: str, config_path: str = "linear_eval",
                     overrides: Sequence[str] = (), finetuning: bool = False) -> dict:
    from .configs import load_config

    cfg = load_config(config_path, overrides)
    train_paths, train_labels, _ = read_labelled_sources(train)
    val_paths, val_labels, _ = read_labelled_sources(val)
    _check_labelled("train", train, train_labels)
    _check_labelled("val", val, val_labels)
    num_classes = _num_classes(cfg.eval, train_labels, val_labels)
    backbone = _load_backbone(backbone_path, cfg.model)
    run = finetune if finetuning else linear_eval
    result = run(backbone, train_paths, train_labels, val_paths, val_labels, num_classes, cfg.eval,
                 progress=_print_progress)
    os.makedirs(workdir, exist_ok=True)
    if "predictions" in result:
        with open(os.path.join(workdir, "predictions.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "pred", "top5"])
            for p in result["predictions"]:
                w.writerow([p["path"], p["label"], p["pred"], " ".join(map(str, p["top5"]))])
    summary = {k: v for k, v in result.items() if k not in ("predictions", "head")}
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2)
    kind = "finetune" if finetuning else "linear-eval"
    print(f"{kind}: top-1 {100 * result['top1']:.1f}% top-5 {100 * result['top5']:.1f}% "
          f"on {result['num_val_videos']} videos")
    return result


def main_extract(backbone_path: str, videos: str, out: str, config_path: str = "linear_eval",
                 overrides: Sequence[str] = ()) -> np.ndarray:
    from .configs import load_config

    cfg = load_config(config_path, overrides)
    paths, labels, _ = read_labelled_sources(videos)
    feats = extract_features(_load_backbone(backbone_path, cfg.model), paths, cfg.eval,
                             lambda i, n: _print_progress("extract", i, n))
    np.savez(out, features=feats, paths=np.asarray(paths), labels=np.asarray(labels))
    print(f"extract: {feats.shape[0]} videos x {feats.shape[1]} features -> {out}")
    return feats
