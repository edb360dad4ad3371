"""FFmpeg's log level: an explicit, process-wide opt-in (the engine never changes it on its own).

FFmpeg has one log level for the whole process (`av_log_set_level`), shared by every library in it that
uses FFmpeg (PyAV, OpenCV, torchvision, ...). cvrl_fast leaves it alone. Its own decoders report corrupt
data as `DecodeError` exceptions, and by default their FFmpeg messages are demoted below FFmpeg's default
level ("info"), so decoding a broken file does not flood stderr. Calling `set_ffmpeg_log_level` sets the
process-wide level and makes the engine's decoders log at their real level from then on, so you see what
FFmpeg says at the level you chose (e.g. "error" while investigating a file, "quiet" to silence FFmpeg
everywhere in the process).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Union

from . import _C

# FFmpeg's AV_LOG_* values (libavutil/log.h).
LEVELS = {"quiet": -8, "panic": 0, "fatal": 8, "error": 16, "warning": 24, "info": 32, "verbose": 40,
          "debug": 48, "trace": 56}


def _level_number(level: Union[str, int]) -> int:
    if isinstance(level, str):
        if level.lower() not in LEVELS:
            raise ValueError(f"FFmpeg log level {level!r} must be one of {', '.join(LEVELS)} or an AV_LOG_* number")
        return LEVELS[level.lower()]
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"FFmpeg log level must be a name or an int, got {type(level).__name__}")
    return level


def set_ffmpeg_log_level(level: Union[str, int]) -> int:
    """Set FFmpeg's process-wide log level (a name in LEVELS or an AV_LOG_* number); returns the previous
    level as a number. Affects every FFmpeg user in the process, by design: call it only if you own the
    process's logging (the CLI does)."""
    return _C.set_ffmpeg_log_level(_level_number(level))


@contextlib.contextmanager
def ffmpeg_log_level(level: Union[str, int]) -> Iterator[None]:
    """`set_ffmpeg_log_level(level)` for the duration of a block; afterwards the previous level and the
    engine's default (demoted decoder messages) again."""
    previous = set_ffmpeg_log_level(level)
    try:
        yield
    finally:
        _C.restore_ffmpeg_log_level(previous)
