"""CVRL pretraining input on NVIDIA DALI: NVDEC (device="gpu") or DALI's CPU decoder (device="cpu") decodes,
the project's own engine plans every sample.

    ds = cvrl_fast.dali.pretrain_dataset(sources, batch_size=64, seed=0, device="gpu", input_context=ctx)
    # elements, as data.pretrain_dataset(..., augment_on="device"):
    #   "view1", "view2": uint8 [B, T, S, S, 3] (decoded, cropped, resized, flipped); "colour1", "colour2":
    #   float32 [B, 13], for cvrl_fast.device_augment in the train step

What runs where. A Python generator (DALI's external source, run by tf.data) walks the sample slots exactly as
`PairLoader` does (the engine's `epoch_permutation`, `replacement_position`, `attempt_key`), reads each video's
frame times with the project's `VideoReader` and asks the engine's planner (`plan_pair`, the same Philox draws)
for both clips' frames, crop boxes, flips and colour parameters. It hands DALI one byte blob per sample: a
small header (the 2T frame numbers, both boxes and flips, both colour rows) followed by the encoded file. In
the DALI pipeline, `fn.decoders.video` decodes the frames of both clips in one call (each distinct frame
once), then each clip is cropped with its box, resized bilinearly to S x S without antialias (half-pixel
centres, the reference's `tf.image.resize`), truncated to uint8 (parity mode, as the reference does) and
flipped. So for a seed the videos, order, frames, boxes, flips and colour rows are those of
`PairLoader(..., augment_on="device")`; pixels differ only by the decoders' YUV->RGB conversion (DALI: BT.601
limited range with bilinear chroma; swscale here: a few levels, measured in the README).

Bad files. Every source is probed once up front with `VideoReader` (codec, size, rotation): a codec the DALI
backend cannot decode (H.264 on device="cpu": DALI 2.x's CPU decoder takes VP8, VP9 and MJPEG only), a
TFRecord, or a rotated video (DALI does not apply display rotation) is a ValueError naming the file and what
to do. A file that fails to open or plan during training is skipped, counted (`stats`) and replaced exactly as
the C++ loader replaces it.

Exact resume: `start_batch` = batches this pipeline already delivered (DALI's own checkpointing does not cover
pipelines with external sources, so the position is ours).
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
from typing import Optional

import numpy as np

from . import _C
from ._augment import AugmentConfig, _resolve
from ._device_augment import NUM_COLOUR_PARAMS
from ._loader import _is_tfrecord, resolve_sources

log = logging.getLogger("cvrl_fast")

DEVICES = ("gpu", "cpu")
# What DALI 2.x's video decoder takes, by FFmpeg codec name (VideoReader.codec).
CODECS = {"gpu": ("h264", "hevc", "av1", "mpeg4", "vp8", "vp9", "mjpeg"), "cpu": ("vp8", "vp9", "mjpeg")}


def available() -> bool:
    """Whether DALI and its TensorFlow plugin import (`make setup-dali` installs both)."""
    try:
        import nvidia.dali  # noqa: F401
        import nvidia.dali.plugin.tf  # noqa: F401
    except ImportError:
        return False
    return True


def _header_layout(num_frames: int):
    """(int32 count, byte size) of a blob's header: 2T frame numbers, then per view x, y, width, height,
    flip; then the two colour rows as float32."""
    ints = 2 * num_frames + 2 * 5
    return ints, 4 * ints + 4 * 2 * NUM_COLOUR_PARAMS


def probe_sources(paths, device: str, num_threads: int = 4) -> None:
    """Raise ValueError naming the first file the DALI backend `device` cannot read, and why."""
    def check(path):
        if _is_tfrecord(path):
            return f"{path}: a TFRecord (JPEG frames); DALI's video decoder reads video files only: use " \
                   "data.loader=cpp for TFRecords"
        try:
            r = _C.VideoReader(path, 1)
        except (RuntimeError, ValueError, OSError):
            return None  # does not open at all: skipped and counted during training, as by the C++ loader
        if r.codec not in CODECS[device]:
            other = "device='gpu' (NVDEC)" if device == "cpu" and r.codec in CODECS["gpu"] else "the C++ loader"
            return (f"{path}: codec {r.codec} is not decoded by DALI's {device.upper()} video decoder (it takes "
                    f"{', '.join(CODECS[device])}); use {other}, or data.loader=cpp")
        if r.rotation % 360:
            return (f"{path}: display rotation {r.rotation} degrees, which DALI's decoder does not apply (the C++ "
                    "loader does); use data.loader=cpp or re-encode the video upright")
        return None

    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
        for problem in pool.map(check, paths):
            if problem:
                raise ValueError(f"cvrl_fast.dali: {problem}")


class SlotSampler:
    """The C++ loader's sequence of samples, planned but not decoded: blob `k` is slot
    `start_batch * batch_size + k` of the endless (or `epochs`-long, whole batches) sequence."""

    def __init__(self, refs, *, seed: int, settings, batch_size: int, shuffle: bool, epochs: Optional[int],
                 start_batch: int, max_retries: int = 32):
        self.refs, self.seed, self.settings, self.shuffle = refs, int(seed), settings, bool(shuffle)
        self.n = len(refs)
        self.max_retries = int(max_retries)
        self.first_slot = int(start_batch) * int(batch_size)
        self.end_slot = None if epochs is None else (int(epochs) * self.n) // batch_size * batch_size
        self.bad = np.zeros(self.n, bool)
        self.stats = {"samples": 0, "failed_attempts": 0, "skipped": []}
        self._perm = {}
        self.last = None  # the last blob's slot, source id, epoch and sample key
        self._ints, self._header_bytes = _header_layout(settings.num_frames)

    def _position(self, slot: int) -> int:
        epoch = slot // self.n
        if epoch not in self._perm:
            self._perm = {epoch: _C.epoch_permutation(self.seed, epoch, self.n, self.shuffle)}
        return self._perm[epoch][slot % self.n]

    def blob(self, slot: int) -> np.ndarray:
        epoch = slot // self.n
        pos = self._position(slot)
        for attempt in range(self.max_retries + 1):
            if attempt:
                pos = _C.replacement_position(self.seed, epoch, slot, attempt, self.n)
            if self.bad[pos]:
                continue
            ref = self.refs[pos]
            key = _C.attempt_key(ref.id, slot, attempt)
            try:
                reader = _C.VideoReader(ref.path, 1)
                pts = list(reader.frame_pts_seconds)
                params, frames1, frames2, _ = _C.plan_pair(pts, True, reader.height, reader.width, self.settings,
                                                           self.seed, epoch, key)
                del reader  # closes the file now
                with open(ref.path, "rb") as f:
                    encoded = np.frombuffer(f.read(), np.uint8)
            except (RuntimeError, ValueError, IndexError, OSError) as e:
                self._failed(pos, ref, e)
                continue
            ints = list(frames1) + list(frames2)
            for v in params.views:
                ints += [v.crop.x, v.crop.y, v.crop.width, v.crop.height, int(v.flip)]
            colours = np.concatenate([_C.colour_row(v) for v in params.views]).astype(np.float32)
            self.stats["samples"] += 1
            self.last = {"slot": slot, "source_id": ref.id, "epoch": epoch, "key": key}
            return np.concatenate([np.asarray(ints, np.int32).view(np.uint8), colours.view(np.uint8), encoded])
        raise RuntimeError(f"cvrl_fast.dali: {self.max_retries} replacement sources in a row failed to decode "
                           f"({int(self.bad.sum())} of {self.n} sources are bad)")

    def _failed(self, pos, ref, error):
        self.stats["failed_attempts"] += 1
        if not self.bad[pos]:
            self.bad[pos] = True
            self.stats["skipped"].append((ref.name(), str(error)))
            log.warning("cvrl_fast: skipping %s: %s", ref.name(), error)
            if self.bad.all():
                first = self.stats["skipped"][0]
                raise RuntimeError(f"cvrl_fast.dali: every one of the {self.n} sources failed to decode; first "
                                   f"error: {first[0]}: {first[1]}")

    def __iter__(self):
        slot = self.first_slot
        while self.end_slot is None or slot < self.end_slot:
            yield self.blob(slot)
            slot += 1


def pretrain_dataset(sources, *, batch_size: int, seed: int, device: str = "gpu", input_context=None,
                     start_batch: int = 0, config: Optional[AugmentConfig] = None, shuffle: bool = True,
                     epochs: Optional[int] = None, num_threads: Optional[int] = None, device_id: Optional[int] = None,
                     prefetch_batches: int = 2, stats: Optional[dict] = None):
    """A `tf.data.Dataset` of CVRL pair batches decoded by DALI, with the elements of
    `data.pretrain_dataset(..., augment_on="device")`; see the module docstring.

    batch_size: with `input_context`, the GLOBAL batch (each pipeline yields the per-replica batch and reads the
      shard `input_pipeline_id` of `num_input_pipelines`, as data.pretrain_dataset does). device: "gpu" (NVDEC,
      mixed backend; `device_id` defaults to the pipeline id) or "cpu". stats: a dict kept up to date with the
      sampler's counts (samples, failed_attempts, skipped [(source, reason)]).
    """
    if device not in DEVICES:
        raise ValueError(f"device = {device!r} must be 'gpu' or 'cpu'")
    if not available():
        raise ImportError("cvrl_fast.dali needs NVIDIA DALI and its TensorFlow plugin: run `make setup-dali` "
                          "(pip install 'cvrl_fast[dali]' plus the plugin built against your TensorFlow)")
    import tensorflow as tf
    import nvidia.dali.math as dmath
    import nvidia.dali.plugin.tf as dali_tf
    from nvidia.dali import fn, pipeline_def, types

    cfg = _resolve(config)
    settings = cfg._native()
    if start_batch < 0:
        raise ValueError(f"start_batch = {start_batch} must be >= 0")
    shard, shards, per_pipeline = 0, 1, int(batch_size)
    if input_context is not None:
        shard, shards = int(input_context.input_pipeline_id), int(input_context.num_input_pipelines)
        per_pipeline = int(input_context.get_per_replica_batch_size(batch_size))
    refs, _ = resolve_sources(sources)
    refs = refs[shard::shards]  # the C++ loader's shards: global ids, disjoint slices
    if not refs:
        raise ValueError(f"input pipeline {shard} of {shards} gets no videos")
    probe_sources(sorted({r.path for r in refs}), device, num_threads or 4)
    # The sampler is endless (DALI's prefetch reads ahead of what is consumed); `epochs` cuts the batches.
    sampler = SlotSampler(refs, seed=seed, settings=settings, batch_size=per_pipeline, shuffle=shuffle,
                          epochs=None, start_batch=start_batch)
    if stats is not None:
        sampler.stats = stats
        stats.update(samples=0, failed_attempts=0, skipped=[])
    T, S, K = cfg.num_frames, cfg.crop_size, NUM_COLOUR_PARAMS
    n_ints, header = _header_layout(T)
    gpu = device == "gpu"
    if gpu and device_id is None:
        device_id = shard if input_context is not None else 0

    @pipeline_def(batch_size=per_pipeline, num_threads=num_threads or max(1, len(os.sched_getaffinity(0))),
                  device_id=device_id if gpu else None, prefetch_queue_depth=prefetch_batches)
    def pipeline():
        blob = fn.external_source(source=iter(sampler), batch=False, dtype=types.UINT8, ndim=1, name="cvrl_blob")
        ints = fn.reinterpret(blob[0:4 * n_ints], dtype=types.INT32, shape=[n_ints])
        colours = fn.reinterpret(blob[4 * n_ints:header], dtype=types.FLOAT, shape=[2 * K])
        # One decode per video: the 2T requested frames, each distinct frame decoded once, in request order.
        frames = fn.decoders.video(blob[header:], frames=ints[0:2 * T], device="mixed" if gpu else "cpu")
        views = []
        for v in range(2):
            o = 2 * T + 5 * v
            clip = fn.slice(frames[v * T:(v + 1) * T], ints[o:o + 2], ints[o + 2:o + 4], axis_names="WH")
            clip = fn.resize(clip, resize_x=S, resize_y=S, interp_type=types.INTERP_LINEAR, antialias=False,
                             dtype=types.FLOAT)
            clip = fn.cast(dmath.floor(clip), dtype=types.UINT8)  # the reference truncates the resized crop
            views.append(fn.flip(clip, horizontal=ints[o + 4]))
        return views[0], views[1], colours[0:K], colours[K:2 * K]

    shape = (per_pipeline, T, S, S, 3)
    with tf.device(f"/gpu:{device_id}" if gpu else "/cpu:0"):
        ds = dali_tf.experimental.DALIDatasetWithInputs(
            pipeline=pipeline(), batch_size=per_pipeline, device_id=device_id if gpu else None,
            output_dtypes=(tf.uint8, tf.uint8, tf.float32, tf.float32),
            output_shapes=(shape, shape, (per_pipeline, K), (per_pipeline, K)))
    names = ("view1", "view2", "colour1", "colour2")
    ds = ds.map(lambda *xs: dict(zip(names, xs)))
    if epochs is not None:  # whole batches of `epochs` passes over this shard, as the C++ loader
        ds = ds.take(max(0, int(epochs) * len(refs) // per_pipeline - int(start_batch)))
    return ds


__all__ = ["pretrain_dataset", "probe_sources", "available", "SlotSampler", "CODECS"]
