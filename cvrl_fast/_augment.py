"""CVRL augmentation settings and the cheap, inspectable parameter draw.

`AugmentConfig` holds every probability and range of the sampling and augmentation pipeline, with
the reference's values as defaults (docs/cvrl.md §1-§2). `sample_params` returns the exact draw the
C++ loader makes for one sample, as plain Python values; `apply_view` applies one view's parameters to
decoded frames (used by the tests against TensorFlow's ops and by other backends).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from . import _C

_JITTER_OP_NAMES = ("brightness", "contrast", "saturation", "hue")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Sampling and augmentation settings; defaults reproduce the CVRL reference.

    Ranges are closed [lo, hi] pairs except the aspect draw, which is uniform in [lo, hi).
    Per-view pairs are (view 1, view 2).
    """

    num_frames: int = 16                 # T, frames per clip
    frame_stride: int = 2                # s, in index-space frames
    crop_size: int = 224                 # S, output side in pixels
    target_fps: Optional[float] = 25.0   # fixed-rate index space; None = native decoded frames
    area_range: Tuple[float, float] = (0.3, 1.0)
    aspect_ratio_range: Tuple[float, float] = (0.5, 2.0)
    min_object_covered: float = 0.1
    max_attempts: int = 100
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.8              # multiplicative factor ~ U[1 - b, 1 + b]
    contrast: float = 0.8                # factor ~ U[1 - c, 1 + c], clip-wide channel mean
    saturation: float = 0.8              # factor ~ U[1 - s, 1 + s]
    hue: float = 0.2                     # delta ~ U[-h, h], hue in [0, 1) units
    grayscale_prob: float = 0.2
    blur_prob: Tuple[float, float] = (1.0, 0.1)
    blur_sigma_range: Tuple[float, float] = (0.1, 2.0)
    solarize_prob: Tuple[float, float] = (0.0, 0.2)
    # Parity mode: truncate the resized crop to uint8 like the reference before x/255.
    parity: bool = True
    # JPEG frames (TFRecords): decode the crop window at 1/2, 1/4 or 1/8 scale in the IDCT when both
    # views' boxes stay >= crop_size on each side. Faster on large frames; changes pixels, so it needs
    # parity=False.
    jpeg_dct_scaling: bool = False

    def __post_init__(self):
        for name in ("area_range", "aspect_ratio_range", "blur_prob", "blur_sigma_range", "solarize_prob"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError(f"AugmentConfig.{name} = {value!r} must be a pair (lo, hi)")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        for name in ("num_frames", "frame_stride", "crop_size", "max_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"AugmentConfig.{name} = {value!r} must be an integer")
        if self.target_fps is not None and not (self.target_fps > 0):
            raise ValueError(f"AugmentConfig.target_fps = {self.target_fps!r} must be > 0 or None (native frames)")
        self._native()  # range checks live in C++ (one source of truth); raises ValueError

    def _native(self) -> "_C.AugmentSettings":
        s = _C.AugmentSettings()
        s.num_frames = int(self.num_frames)
        s.frame_stride = int(self.frame_stride)
        s.crop_size = int(self.crop_size)
        s.target_fps = 0.0 if self.target_fps is None else float(self.target_fps)
        s.area_min, s.area_max = self.area_range
        s.aspect_min, s.aspect_max = self.aspect_ratio_range
        s.min_object_covered = float(self.min_object_covered)
        s.max_attempts = int(self.max_attempts)
        s.flip_prob = float(self.flip_prob)
        s.jitter_prob = float(self.jitter_prob)
        s.brightness = float(self.brightness)
        s.contrast = float(self.contrast)
        s.saturation = float(self.saturation)
        s.hue = float(self.hue)
        s.grayscale_prob = float(self.grayscale_prob)
        s.blur_prob = list(self.blur_prob)
        s.blur_sigma_min, s.blur_sigma_max = self.blur_sigma_range
        s.solarize_prob = list(self.solarize_prob)
        s.truncate_after_resize = bool(self.parity)
        s.jpeg_dct_scaling = bool(self.jpeg_dct_scaling)
        s.validate()
        return s


def _resolve(config: Optional[AugmentConfig]) -> AugmentConfig:
    if config is None:
        return AugmentConfig()
    if not isinstance(config, AugmentConfig):
        raise TypeError(f"config must be a cvrl_fast.AugmentConfig, got {type(config).__name__}")
    return config


def view_params_to_dict(v: "_C.ViewParams") -> dict:
    return {
        "crop": (v.crop.x, v.crop.y, v.crop.width, v.crop.height),
        "flip": v.flip,
        "jitter": v.jitter,
        "brightness": v.brightness,
        "contrast": v.contrast,
        "saturation": v.saturation,
        "hue": v.hue,
        "jitter_order": tuple(_JITTER_OP_NAMES[i] for i in v.jitter_order),
        "grayscale": v.grayscale,
        "blur": v.blur,
        "blur_sigma": v.blur_sigma,
        "solarize": v.solarize,
    }


def view_params_from_dict(d: dict) -> "_C.ViewParams":
    v = _C.ViewParams()
    v.crop = _C.Box(*(int(c) for c in d["crop"]))
    for key in ("flip", "jitter", "grayscale", "blur", "solarize"):
        setattr(v, key, bool(d[key]))
    for key in ("brightness", "contrast", "saturation", "hue", "blur_sigma"):
        setattr(v, key, float(d[key]))
    order = d["jitter_order"]
    v.jitter_order = [(_JITTER_OP_NAMES.index(o) if isinstance(o, str) else int(o)) for o in order]
    return v


def sample_params(num_frames: int, height: int, width: int, seed: int, *, epoch: int = 0, index: int = 0,
                  config: Optional[AugmentConfig] = None) -> dict:
    """The loader's exact random draw for sample `index` of `epoch` (a pure function of its inputs).

    num_frames is L in the index space (after fixed-rate mapping); height/width are the stored frame
    size. Returns plain values: the temporal plan and, per view, the clip's index-space frame indices,
    crop box (x, y, width, height) and colour/blur/solarize parameters.
    """
    cfg = _resolve(config)
    p = _C.sample_pair_params(int(num_frames), int(height), int(width), cfg._native(), int(seed), int(epoch),
                              int(index))
    c = p.clips
    out = {
        "num_frames": c.num_frames,
        "offset_range": c.offset_range,
        "interval": c.interval,
        "start_a": c.start_a,
        "start_b": c.start_b,
        "swapped": c.swapped,
    }
    for v in range(2):
        d = view_params_to_dict(p.views[v])
        d["indices"] = list(c.indices[v])
        out[f"view{v + 1}"] = d
    return out


def apply_view(frames: np.ndarray, params: dict, config: Optional[AugmentConfig] = None, *,
               float_output: bool = False) -> np.ndarray:
    """Applies one view's parameters (a dict as in `sample_params`) to uint8 frames [T, H, W, 3]."""
    cfg = _resolve(config)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"apply_view: frames must be uint8, got {frames.dtype}")
    return _C.augment_clip(frames, view_params_from_dict(params), cfg._native(), float_output)
