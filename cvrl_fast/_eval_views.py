"""Where evaluation clips and crops come from (cvrl.md §6.1). Pure index arithmetic, no decoding.

Linear-eval training takes one clip of 32 frames at stride 2 (a 63-frame span); testing takes 30 views per
video: 10 evenly spaced clips x 3 crops of 256x256 along the long side after a short-side-256 resize.
Frame indices wrap around (the video loops) for videos shorter than the span, as in pretraining.
"""
from __future__ import annotations

import numpy as np


def clip_indices(start: int, num_frames: int, clip_frames: int, frame_stride: int) -> np.ndarray:
    """Indices start + frame_stride*k for k in [0, clip_frames), wrapped modulo num_frames."""
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    return (start + frame_stride * np.arange(clip_frames, dtype=np.int64)) % num_frames


def train_clip_start(num_frames: int, rng: np.random.Generator, clip_frames: int = 32,
                     frame_stride: int = 2) -> int:
    """Start of the one linear-eval training clip: UniformInt[0, L - span + 1) if L > span - 1, else [0, L).

    With the defaults the span is 63 frames, so the start is UniformInt[0, L - 62) for L > 62: the upper
    bound is exclusive, as in the reference.
    """
    span = (clip_frames - 1) * frame_stride + 1
    high = num_frames - span + 1 if num_frames > span - 1 else num_frames
    return int(rng.integers(0, high))


def test_clip_starts(num_frames: int, num_clips: int = 10, clip_frames: int = 32,
                     frame_stride: int = 2) -> np.ndarray:
    """The 10 test clip starts: floor(linspace(0, max(0, L - clip_frames*frame_stride), num_clips))."""
    last = max(0, num_frames - clip_frames * frame_stride)
    return np.floor(np.linspace(0, last, num_clips)).astype(np.int64)


def short_side_size(height: int, width: int, short_side: int = 256) -> tuple[int, int]:
    """(h, w) after resizing so the short side is `short_side`; the long side is floor(long*short/short_in)."""
    if min(height, width) <= 0:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    if height <= width:
        return short_side, (width * short_side) // height
    return (height * short_side) // width, short_side


def three_crop_offsets(height: int, width: int, crop_size: int = 256) -> list[tuple[int, int]]:
    """(y, x) of the 3 test crops along the long side: 0, round(long/2 - crop/2), long - crop.

    Along H when H >= W (the reference's rule), otherwise along W. The frame must already be resized so
    its short side equals crop_size.
    """
    if min(height, width) != crop_size:
        raise ValueError(f"three_crop_offsets expects short side {crop_size}, got {height}x{width}")
    long_side = height if height >= width else width
    offsets = [0, int(round(long_side / 2 - crop_size / 2)), long_side - crop_size]
    return [(o, 0) if height >= width else (0, o) for o in offsets]
