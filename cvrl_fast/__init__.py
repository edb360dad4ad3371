"""cvrl_fast: fast CVRL video self-supervised learning.

Public names are re-exported from private modules; `import cvrl_fast` never imports TensorFlow.
The trainer lives in `cvrl_fast.trainer` (imports TensorFlow on first use).
"""
from ._C import DecodeError, build_info
DecodeError.__module__ = "cvrl_fast"  # tracebacks and pickle name it cvrl_fast.DecodeError, where it is exported
from ._ffmpeg_log import set_ffmpeg_log_level
from ._video import VideoReader, decode_jpeg_frames
from ._augment import AugmentConfig
from ._loader import PairLoader, sample_pair
from ._device_augment import COLOUR_FIELDS, device_augment  # imports TensorFlow when called, not here

__version__ = "0.1.0"

__all__ = ["DecodeError", "set_ffmpeg_log_level", "build_info", "VideoReader", "decode_jpeg_frames", "AugmentConfig",
           "PairLoader", "sample_pair", "device_augment", "COLOUR_FIELDS"]
