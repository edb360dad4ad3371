"""NVTX ranges on the Python side of the input pipeline, through the `nvtx` package.

Ranges go to the "cvrl_fast" domain, next to the C++ engine's ranges (decode, augment, batch_row,
wait_batch). A profiler announces itself with NVTX_INJECTION64_PATH (nsys sets it for the process it
launches); without it, or without the `nvtx` package, `annotate` returns one shared null context, so an
unprofiled run pays a dictionary lookup per call and nothing else.
"""
from __future__ import annotations

import contextlib
import os

_NULL = contextlib.nullcontext()
DOMAIN = "cvrl_fast"


def _tool_attached() -> bool:
    return bool(os.environ.get("NVTX_INJECTION64_PATH") or os.environ.get("NVTX_INJECTION32_PATH"))


_nvtx = None
if _tool_attached():
    try:
        import nvtx as _nvtx
    except ImportError:  # the ranges are optional: profile without them
        pass

ENABLED = _nvtx is not None


def annotate(name: str):
    """Context manager: an NVTX range `name` in the cvrl_fast domain while a profiler listens."""
    return _nvtx.annotate(name, domain=DOMAIN) if ENABLED else _NULL
