import numpy as np
import pytest

from cvrl_fast import _eval_views as ev


def test_test_clip_starts_matches_spec_linspace():
    # L = 250 (10 s at 25 fps): floor(linspace(0, 250 - 64, 10)).
    starts = ev.test_clip_starts(250)
    assert starts.tolist() == [0, 20, 41, 62, 82, 103, 124, 144, 165, 186]
    # The last clip ends inside the video: 186 + 2*31 = 248 < 250.
    assert ev.clip_indices(int(starts[-1]), 250, 32, 2).max() == 248


def test_test_clip_starts_short_video_wraps():
    starts = ev.test_clip_starts(40)
    assert starts.tolist() == [0] * 10
    idx = ev.clip_indices(0, 40, 32, 2)
    assert idx[:20].tolist() == list(range(0, 40, 2)) and idx[20:].tolist() == list(range(0, 24, 2))


def test_clip_indices_fails():
    with pytest.raises(ValueError, match="num_frames must be positive"):
        ev.clip_indices(0, 0, 32, 2)


def test_train_clip_start_bounds():
    rng = np.random.default_rng(0)
    starts = [ev.train_clip_start(100, rng) for _ in range(4000)]
    # UniformInt[0, L - 62) = [0, 38): 37 is the largest start, every value is reached.
    assert min(starts) == 0 and max(starts) == 37 and len(set(starts)) == 38
    short = [ev.train_clip_start(50, rng) for _ in range(2000)]
    assert min(short) == 0 and max(short) == 49


def test_short_side_size():
    assert ev.short_side_size(240, 320) == (256, 341)   # floor(320*256/240) = 341
    assert ev.short_side_size(320, 240) == (341, 256)
    assert ev.short_side_size(256, 340) == (256, 340)


def test_short_side_size_fails():
    with pytest.raises(ValueError, match="frame size must be positive"):
        ev.short_side_size(0, 10)


def test_three_crop_offsets_along_long_side():
    assert ev.three_crop_offsets(256, 341) == [(0, 0), (0, 42), (0, 85)]   # round(170.5-128)=42 (half to even)
    assert ev.three_crop_offsets(340, 256) == [(0, 0), (42, 0), (84, 0)]
    assert ev.three_crop_offsets(256, 256) == [(0, 0), (0, 0), (0, 0)]


def test_three_crop_offsets_fails():
    with pytest.raises(ValueError, match="expects short side 256"):
        ev.three_crop_offsets(240, 320)
