"""Python face of the C++ decoder: `VideoReader` and `decode_jpeg_frames`.

Threading contract: one `VideoReader` per thread. A reader must not be used from two threads at once;
separate readers share nothing, and all decode work runs with the GIL released, so readers in different
threads decode in parallel.
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from . import _C

__all__ = ["VideoReader", "decode_jpeg_frames"]


class VideoReader:
    """Frame-exact random access to one video.

    `source` is a path (str or os.PathLike) or the bytes of a whole video file. Frame `i` is the i-th
    frame in presentation order, exactly what
    `ffmpeg -i X -fps_mode passthrough -pix_fmt rgb24 -f rawvideo -` yields (without auto-rotation:
    `rotation` reports the display matrix and frames are returned as coded).

    Raises FileNotFoundError for a missing path, and `cvrl_fast.DecodeError` (a RuntimeError) for a file
    that FFmpeg cannot open or that has no decodable video stream; each message names the file.
    """

    def __init__(self, source: str | os.PathLike | bytes | bytearray | memoryview, *, num_threads: int = 1):
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._reader = _C.VideoReader.from_bytes(bytes(source), num_threads)
        elif isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if not os.path.exists(path):
                raise FileNotFoundError(f"no such video file: '{path}'")
            if os.path.isdir(path):
                raise ValueError(f"cannot open video '{path}': it is a directory")
            self._reader = _C.VideoReader(path, num_threads)
        else:
            raise TypeError(f"VideoReader source must be a path or bytes, got {type(source).__name__}")

    # ---- lifetime
    def close(self) -> None:
        """Releases the file and every FFmpeg object now (otherwise when the reader is garbage collected)."""
        self.__dict__.pop("_reader", None)

    @property
    def closed(self) -> bool:
        return "_reader" not in self.__dict__

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getattr__(self, name):
        # Only reached when normal lookup fails: `_reader` after close() (or a failed __init__).
        if name == "_reader":
            raise ValueError("I/O operation on a closed VideoReader")
        raise AttributeError(name)

    # ---- metadata
    @property
    def num_frames(self) -> int:
        """Number of frames that actually decode (from the packet index and the decoder), never a header guess."""
        return self._reader.num_frames

    @property
    def fps(self) -> float:
        """Average frame rate (frames per second)."""
        return self._reader.fps

    @property
    def duration_seconds(self) -> float:
        """First frame's timestamp to the end of the last frame, in seconds."""
        return self._reader.duration_seconds

    @property
    def width(self) -> int:
        return self._reader.width

    @property
    def height(self) -> int:
        return self._reader.height

    @property
    def codec(self) -> str:
        """FFmpeg's codec name, e.g. 'h264'."""
        return self._reader.codec

    @property
    def rotation(self) -> int:
        """Degrees (0, 90, 180, 270) counter-clockwise that the display matrix turns the frame for display.

        Frames are returned as coded; `np.rot90(frame, reader.rotation // 90)` is the displayed picture
        (what the ffmpeg CLI shows with its default autorotate).
        """
        return self._reader.rotation

    @property
    def frame_pts_seconds(self) -> np.ndarray:
        """Presentation timestamp in seconds of every frame, ascending (float64 [num_frames])."""
        return self._reader.frame_pts_seconds

    @property
    def stats(self) -> dict:
        """Decode counters over the reader's lifetime (seeks, packets_sent, frames_decoded, ...)."""
        return self._reader.stats

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        if self.closed:
            return "VideoReader(<closed>)"
        return (f"VideoReader({self._reader.source_name!r}, {self.codec}, {self.width}x{self.height}, "
                f"{self.num_frames} frames, {self.fps:.3f} fps)")

    # ---- decode
    def get_frames(self, indices: Iterable[int] | np.ndarray, *, size: Sequence[int] | None = None,
                   crop: Sequence[int] | None = None) -> np.ndarray:
        """Frames by presentation index as uint8 [N, H, W, 3] RGB, in the order asked (duplicates allowed).

        crop=(x, y, width, height) converts only that window of each frame (source pixels, rows
        [y, y + height), cols [x, x + width)); without `size` it equals the same window of the full frame
        exactly. size=(h, w) resizes the frame (or the window) during colour conversion, one bilinear
        swscale pass. Indices outside [0, num_frames) raise IndexError, a crop outside the frame or a
        non-positive size ValueError; a frame that cannot be decoded (corrupt data) raises DecodeError.
        """
        idx = np.asarray(indices)
        if idx.ndim != 1:
            idx = idx.reshape(-1)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"frame indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False).tolist()
        if size is not None:
            size = (int(size[0]), int(size[1]))
        if crop is not None:
            if len(crop) != 4:
                raise ValueError(f"crop must be (x, y, width, height), got {tuple(crop)}")
            crop = tuple(int(v) for v in crop)
        return self._reader.get_frames(idx, crop, size)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.get_frames([index])[0]


def decode_jpeg_frames(frames: Sequence[bytes], *, size: Sequence[int] | None = None,
                       dct_method: str = "INTEGER_ACCURATE") -> np.ndarray:
    """Decode JPEG frames with libjpeg-turbo into uint8 [N, H, W, 3] RGB (GIL released).

    All frames must have the same size. size=(h, w) resizes (one bilinear swscale pass from the JPEG's
    YCbCr planes). dct_method names the inverse DCT as TensorFlow's `tf.io.decode_jpeg` does:
    "INTEGER_ACCURATE" (default; equals TF with that method) or "INTEGER_FAST" (equals TF's default
    decode). A bad or truncated JPEG, or frames of different sizes, raise `cvrl_fast.DecodeError` naming
    the frame index.
    """
    if dct_method not in ("INTEGER_ACCURATE", "INTEGER_FAST"):
        raise ValueError(f"dct_method must be 'INTEGER_ACCURATE' or 'INTEGER_FAST', got {dct_method!r}")
    frames = [f if isinstance(f, bytes) else bytes(f) for f in frames]
    if size is not None:
        size = (int(size[0]), int(size[1]))
    return _C.decode_jpeg_frames(frames, size, dct_method == "INTEGER_FAST")
