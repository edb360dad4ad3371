"""Data preparation: write the reference's TFRecord format (cvrl.md §7.1) from raw videos.

One `tf.train.SequenceExample` per video: feature_lists['image/encoded'] holds one JPEG per frame
(every frame of the fixed-rate index space, in order), context['clip/label/index'] the labels.
Unlike the reference's example writer, the frame rate and resolution are recorded in the context
('video/fps', 'image/height', 'image/width', 'video/source') so a reader knows what it got.

    python -m cvrl_fast.tfrecord --fps 25 --short-side 256 --quality 90 out.tfrecord a.mp4 b.mp4

The loader reads these files (and the reference's own) directly: `PairLoader(["out.tfrecord"], ...)`.
Needs TensorFlow (for the SequenceExample proto, JPEG encoding and the record writer).
"""
from __future__ import annotations

import argparse
import os
from typing import Iterable, Optional, Sequence

import numpy as np

from . import _C


def _frames_at_rate(path: str, fps: Optional[float], short_side: Optional[int]) -> tuple[np.ndarray, float]:
    """All frames of the fixed-rate index space (native frames if fps is None), optionally resized so
    the short side is `short_side` (bilinear, in the decoder's conversion pass)."""
    reader = _C.VideoReader(path)
    pts = list(reader.frame_pts_seconds)
    frame_map = _C.fixed_rate_frame_map(pts, float(fps) if fps else 0.0)
    size = None
    if short_side:
        h, w = reader.height, reader.width
        if h <= w:
            size = (int(short_side), int(w * short_side // h))
        else:
            size = (int(h * short_side // w), int(short_side))
    unique = sorted(set(frame_map))
    decoded = reader.get_frames(unique, None, size)
    pos = {f: i for i, f in enumerate(unique)}
    frames = decoded[[pos[f] for f in frame_map]]
    rate = float(fps) if fps else float(reader.fps)
    return frames, rate


def video_to_sequence_example(path: str, *, labels: Sequence[int] = (), fps: Optional[float] = 25.0,
                              short_side: Optional[int] = None, quality: int = 90):
    import tensorflow as tf

    frames, rate = _frames_at_rate(path, fps, short_side)
    ex = tf.train.SequenceExample()
    ctx = ex.context.feature
    ctx["clip/label/index"].int64_list.value.extend(int(x) for x in labels)
    ctx["video/fps"].float_list.value.append(rate)
    ctx["image/height"].int64_list.value.append(int(frames.shape[1]))
    ctx["image/width"].int64_list.value.append(int(frames.shape[2]))
    ctx["video/source"].bytes_list.value.append(os.path.basename(path).encode())
    steps = ex.feature_lists.feature_list["image/encoded"]
    for frame in frames:
        jpeg = tf.io.encode_jpeg(frame, quality=int(quality), chroma_downsampling=True).numpy()
        steps.feature.add().bytes_list.value.append(jpeg)
    return ex


def write_tfrecord(output_path: str, videos: Iterable[str], *, labels: Optional[Sequence[Sequence[int]]] = None,
                   fps: Optional[float] = 25.0, short_side: Optional[int] = None, quality: int = 90) -> int:
    """Writes one SequenceExample per video to `output_path`; returns the number of records."""
    import tensorflow as tf

    videos = list(videos)
    if labels is not None and len(labels) != len(videos):
        raise ValueError(f"labels has {len(labels)} entries for {len(videos)} videos")
    count = 0
    with tf.io.TFRecordWriter(output_path) as writer:
        for i, path in enumerate(videos):
            ex = video_to_sequence_example(path, labels=labels[i] if labels is not None else (), fps=fps,
                                           short_side=short_side, quality=quality)
            writer.write(ex.SerializeToString())
            count += 1
    return count


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cvrl_fast.tfrecord", description=__doc__.split("\n\n")[0])
    p.add_argument("output", help="output .tfrecord file")
    p.add_argument("videos", nargs="+", help="input videos (any FFmpeg container)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the stored frames (0 = native)")
    p.add_argument("--short-side", type=int, default=None, help="resize so the short side is this (pixels)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--label", type=int, action="append", default=None,
                   help="label index for every video (repeat for multi-label)")
    args = p.parse_args(argv)
    labels = [args.label] * len(args.videos) if args.label else None
    n = write_tfrecord(args.output, args.videos, labels=labels, fps=args.fps or None, short_side=args.short_side,
                       quality=args.quality)
    print(f"wrote {n} records to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
