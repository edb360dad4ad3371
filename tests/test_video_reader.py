"""VideoReader against the ffmpeg CLI oracle: frame-exact decode, metadata, crop/resize, errors, leaks,
threads. Default-run budget: about 30 s on a 2-core machine."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest

import cvrl_fast
from conftest import DECODE_CASES, asan_active, ffmpeg_frames, ffprobe_frame_times, _run, gil_gap_check

# ------------------------------------------------------------------ helpers


def random_index_lists(num_frames: int, seed: int, count: int = 6, length: int = 12) -> list[np.ndarray]:
    """Unsorted index lists with duplicates, plus the classic edge cases."""
    rng = np.random.default_rng(seed)
    lists = [rng.integers(0, num_frames, length) for _ in range(count)]
    lists.append(np.array([num_frames - 1, 0, num_frames - 1]))  # last first, duplicates
    lists.append(np.arange(num_frames)[::-1][:length])  # descending
    return lists


def assert_frames_match(out: np.ndarray, ref: np.ndarray, indices, what: str) -> None:
    """Mean |diff| <= 1 per frame, and each frame is closest to the reference frame of the same index."""
    indices = np.asarray(indices)
    assert out.shape == (len(indices),) + ref.shape[1:], f"{what}: shape {out.shape}"
    assert out.dtype == np.uint8
    for slot, i in enumerate(indices):
        diff = np.abs(out[slot].astype(np.int16) - ref[i].astype(np.int16)).mean()
        assert diff <= 1.0, f"{what}: frame {i} differs from the CLI decode by mean {diff:.3f}"
        for j in range(max(0, i - 2), min(len(ref), i + 3)):
            if j != i and not np.array_equal(ref[j], ref[i]):
                other = np.abs(out[slot].astype(np.int16) - ref[j].astype(np.int16)).mean()
                assert diff < other, f"{what}: frame {i} is closer to reference frame {j}"


# ------------------------------------------------------------------ frame-exact decode


@pytest.mark.parametrize("name", DECODE_CASES)
def test_get_frames_matches_ffmpeg_cli(video_files, name):
    path = video_files[name]
    ref = ffmpeg_frames(path)
    reader = cvrl_fast.VideoReader(path)
    assert reader.num_frames == len(ref), f"{name}: num_frames {reader.num_frames}, CLI decodes {len(ref)}"
    assert (reader.height, reader.width) == ref.shape[1:3]
    for k, indices in enumerate(random_index_lists(len(ref), seed=k_seed(name))):
        out = reader.get_frames(indices)
        assert_frames_match(out, ref, indices, f"{name} list {k}")
    # A fresh reader per list too: no state carried between calls matters.
    indices = random_index_lists(len(ref), seed=1)[0]
    assert_frames_match(cvrl_fast.VideoReader(path).get_frames(indices), ref, indices, f"{name} fresh")


def k_seed(name: str) -> int:
    return sum(map(ord, name))


def test_get_frames_matches_ffmpeg_cli_vfr(video_files):
    path = video_files["vfr_mkv"]
    ref = ffmpeg_frames(path)
    reader = cvrl_fast.VideoReader(path)
    assert reader.num_frames == len(ref) == 25 + 15  # 1 s at 25 fps + 1.5 s at 10 fps
    for k, indices in enumerate(random_index_lists(len(ref), seed=7)):
        assert_frames_match(reader.get_frames(indices), ref, indices, f"vfr list {k}")


def test_get_frames_open_gop_every_frame(video_files):
    """Each frame alone, from a fresh position: leading pictures and frames after recovery points."""
    path = video_files["h264_open_gop_mkv"]
    ref = ffmpeg_frames(path)
    reader = cvrl_fast.VideoReader(path)
    for i in range(reader.num_frames):
        assert_frames_match(reader.get_frames([i]), ref, [i], f"open GOP frame {i}")
    everything = list(range(reader.num_frames))
    assert_frames_match(cvrl_fast.VideoReader(path).get_frames(everything), ref, everything, "open GOP all")


def test_frame_pts_seconds_match_ffprobe_vfr(video_files):
    path = video_files["vfr_mkv"]
    reader = cvrl_fast.VideoReader(path)
    expected = ffprobe_frame_times(path)
    np.testing.assert_allclose(reader.frame_pts_seconds, expected, atol=1e-3)
    steps = np.diff(reader.frame_pts_seconds)
    assert np.allclose(steps[:20], 0.04, atol=2e-3) and np.allclose(steps[-10:], 0.1, atol=2e-3)


def test_get_frames_matches_ffmpeg_cli_real_clips(clip_dir):
    # Oracle limited to the first frames of each clip to keep memory and time small.
    for path in sorted(pathlib.Path(clip_dir).iterdir()):
        ref = ffmpeg_frames(path, max_frames=36)
        reader = cvrl_fast.VideoReader(path)
        for k, indices in enumerate(random_index_lists(len(ref), seed=k_seed(path.name), count=2, length=8)):
            assert_frames_match(reader.get_frames(indices), ref, indices, f"{path.name} list {k}")


REAL_CLIPS_QUICK = ["bikes.mp4", "carphone_pristine.mp4", "cityCC0.mpg"]


def _cli_frame_count(path) -> int:
    out = _run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                "stream=nb_read_frames", "-of", "csv=p=0", str(path)])
    return int(out.decode().strip().rstrip(","))


def test_num_frames_match_ffmpeg_cli_real_clips(clip_dir):
    for name in REAL_CLIPS_QUICK:
        path = pathlib.Path(clip_dir) / name
        assert cvrl_fast.VideoReader(path).num_frames == _cli_frame_count(path), name


@pytest.mark.slow
def test_num_frames_match_ffmpeg_cli_all_real_clips(clip_dir):
    for path in sorted(pathlib.Path(clip_dir).iterdir()):
        assert cvrl_fast.VideoReader(path).num_frames == _cli_frame_count(path), path.name


@pytest.mark.slow
def test_get_frames_matches_ffmpeg_cli_real_clips_everywhere(clip_dir):
    """Every clip, frames drawn from the whole length (the CLI decode of long clips takes a while)."""
    for path in sorted(pathlib.Path(clip_dir).iterdir()):
        ref = ffmpeg_frames(path, max_frames=600)
        reader = cvrl_fast.VideoReader(path)
        for k, indices in enumerate(random_index_lists(len(ref), seed=3, count=10, length=32)):
            assert_frames_match(reader.get_frames(indices), ref, indices, f"{path.name} list {k}")


def test_get_frames_from_bytes_equals_path(video_files):
    for name in ("h264_bframes_mp4", "mpeg2_ts", "vp9_webm", "mpeg4_avi"):
        path = video_files[name]
        by_path = cvrl_fast.VideoReader(path)
        by_bytes = cvrl_fast.VideoReader(path.read_bytes())
        assert by_bytes.num_frames == by_path.num_frames
        indices = [5, 1, by_path.num_frames - 1, 5]
        np.testing.assert_array_equal(by_bytes.get_frames(indices), by_path.get_frames(indices))


# ------------------------------------------------------------------ metadata


def test_metadata(video_files):
    reader = cvrl_fast.VideoReader(video_files["h264_bframes_mp4"])
    assert reader.num_frames == 40 and len(reader) == 40
    assert reader.fps == pytest.approx(25.0)
    assert reader.duration_seconds == pytest.approx(1.6, abs=1e-6)
    assert (reader.width, reader.height) == (96, 64)
    assert reader.codec == "h264"
    assert reader.rotation == 0
    np.testing.assert_allclose(reader.frame_pts_seconds, np.arange(40) / 25.0, atol=1e-6)
    assert "h264" in repr(reader)


def test_metadata_codecs(video_files):
    expected = {"hevc_mkv": "hevc", "vp9_webm": "vp9", "mpeg2_mpg": "mpeg2video", "mpeg4_avi": "mpeg4",
                "mjpeg_avi": "mjpeg", "av1_mp4": "av1"}
    for name, codec in expected.items():
        reader = cvrl_fast.VideoReader(video_files[name])
        assert reader.codec == codec
        assert reader.fps == pytest.approx(25.0, rel=1e-3)
        assert reader.duration_seconds == pytest.approx(1.6, abs=0.05), name


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_metadata_rotation(video_files, degrees):
    path = video_files[f"rotated_{degrees}_mp4"]
    reader = cvrl_fast.VideoReader(path)
    assert (reader.width, reader.height) == (96, 64)  # as coded, before rotation
    frames = reader.get_frames([0, 4])
    assert frames.shape == (2, 64, 96, 3)
    # Oracle: the CLI with its default autorotate shows np.rot90(frame, rotation // 90).
    shown = _run(["ffmpeg", "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-pix_fmt", "rgb24",
                  "-f", "rawvideo", "-"])
    shape = (-1, 96, 64, 3) if degrees % 180 else (-1, 64, 96, 3)
    shown = np.frombuffer(shown, np.uint8).reshape(shape)
    assert reader.rotation in (0, 90, 180, 270)
    for slot, i in enumerate([0, 4]):
        np.testing.assert_array_equal(np.rot90(frames[slot], reader.rotation // 90), shown[i])
    assert cvrl_fast.VideoReader(video_files["bt709_mp4"]).rotation == 0


def test_cover_art_stream_is_not_the_video(video_files, tmp_path):
    cover = tmp_path / "cover.png"
    _run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=200x200", "-frames:v", "1", str(cover)])
    path = tmp_path / "with_cover.mp4"
    _run(["ffmpeg", "-v", "error", "-i", str(video_files["tiny_16x16_mp4"]), "-i", str(cover), "-map", "0",
          "-map", "1", "-c", "copy", "-disposition:v:1", "attached_pic", str(path)])
    reader = cvrl_fast.VideoReader(path)
    assert (reader.codec, reader.width, reader.height, reader.num_frames) == ("h264", 16, 16, 25)
    ref = ffmpeg_frames(video_files["tiny_16x16_mp4"])
    assert_frames_match(reader.get_frames([24, 0]), ref, [24, 0], "with cover art")


def test_metadata_odd_and_tiny_sizes(video_files):
    assert (cvrl_fast.VideoReader(video_files["odd_vp9_webm"]).width,
            cvrl_fast.VideoReader(video_files["odd_vp9_webm"]).height) == (97, 61)
    tiny = cvrl_fast.VideoReader(video_files["tiny_16x16_mp4"])
    assert (tiny.width, tiny.height, tiny.num_frames) == (16, 16, 25)
    one = cvrl_fast.VideoReader(video_files["one_frame_mp4"])
    assert one.num_frames == 1
    assert one.duration_seconds == pytest.approx(0.04, abs=1e-6)


# ------------------------------------------------------------------ crop and resize


CROPS = [(0, 0, 10, 8), (1, 1, 17, 9), (3, 2, 40, 31), (10, 5, 1, 1), (0, 0, 96, 64), (95, 63, 1, 1),
         (13, 7, 83, 57)]


@pytest.mark.parametrize("name", ["h264_bframes_mp4", "h264_yuv444_mkv", "h264_10bit_mp4", "mjpeg_avi",
                                  "odd_vp9_webm", "odd_h264_444_mp4", "rawvideo_yuyv422_avi", "rawvideo_pal8_avi"])
def test_get_frames_crop_is_exact_window(video_files, name):
    reader = cvrl_fast.VideoReader(video_files[name])
    full = reader.get_frames([0, 7, 3])
    w, h = reader.width, reader.height
    for x, y, cw, ch in CROPS:
        x, y = min(x, w - 1), min(y, h - 1)
        cw, ch = min(cw, w - x), min(ch, h - y)
        out = reader.get_frames([0, 7, 3], crop=(x, y, cw, ch))
        np.testing.assert_array_equal(out, full[:, y:y + ch, x:x + cw], err_msg=f"{name} crop {(x, y, cw, ch)}")


@pytest.mark.parametrize("name", ["h264_bframes_mp4", "vp9_webm", "h264_10bit_mp4", "odd_vp9_webm"])
def test_get_frames_size_matches_ffmpeg_cli_scale(video_files, name):
    path = video_files[name]
    for size in [(32, 48), (100, 150), (61, 33)]:
        ref = ffmpeg_frames(path, size=size)
        indices = [0, 9, 3, 3]
        out = cvrl_fast.VideoReader(path).get_frames(indices, size=size)
        assert out.shape == (4, size[0], size[1], 3)
        assert_frames_match(out, ref, indices, f"{name} size {size}")


@pytest.mark.parametrize("name", ["h264_bframes_mp4", "vp9_webm", "odd_vp9_webm"])
def test_get_frames_crop_and_size_matches_ffmpeg_cli(video_files, name):
    """A resized window equals the CLI's exact crop followed by one bilinear scale."""
    path = video_files[name]
    reader = cvrl_fast.VideoReader(path)
    for x, y, cw, ch in [(8, 4, 64, 48), (9, 5, 63, 47), (1, 0, 30, 61 if "odd" in name else 64)]:
        for size in [(30, 40), (ch * 2, cw + 3)]:
            raw = _run(["ffmpeg", "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-vf",
                        f"crop={cw}:{ch}:{x}:{y}:exact=1,scale={size[1]}:{size[0]}:flags=bilinear",
                        "-pix_fmt", "rgb24", "-f", "rawvideo", "-"])
            ref = np.frombuffer(raw, np.uint8).reshape(-1, size[0], size[1], 3)
            indices = [2, 11, 2]
            out = reader.get_frames(indices, crop=(x, y, cw, ch), size=size)
            assert_frames_match(out, ref, indices, f"{name} crop {(x, y, cw, ch)} size {size}")


@pytest.mark.parametrize("name", ["h264_10bit_mp4", "h264_yuv444_mkv", "mjpeg_avi", "odd_h264_444_mp4",
                                  "rawvideo_yuyv422_avi", "png_mov"])
def test_get_frames_crop_and_same_size_equals_crop(video_files, name):
    # The resize path with size == window size reproduces the exact window (within rounding).
    reader = cvrl_fast.VideoReader(video_files[name])
    full = reader.get_frames([3])
    for x, y, cw, ch in [(9, 5, 40, 31), (0, 0, 20, 20), (8, 4, 33, 17)]:
        out = reader.get_frames([3], crop=(x, y, cw, ch), size=(ch, cw))
        assert np.abs(out.astype(int) - full[:, y:y + ch, x:x + cw]).mean() <= 1.0, (name, x, y)


# ------------------------------------------------------------------ decode work


def test_get_frames_converts_only_returned_frames(video_files):
    reader = cvrl_fast.VideoReader(video_files["h264_default_gop_mp4"])
    before = reader.stats["frames_converted"]
    reader.get_frames([50, 52, 50, 54, 52])
    assert reader.stats["frames_converted"] - before == 3


def test_get_frames_skips_unneeded_nonreference_frames(video_files):
    # One keyframe, B-frames: reaching frame 90 needs its references, not the non-reference B-frames.
    reader = cvrl_fast.VideoReader(video_files["h264_default_gop_mp4"])
    reader.get_frames([90])
    stats = reader.stats
    assert stats["nonref_skip_sent"] > 0
    assert stats["frames_decoded"] < stats["packets_sent"]


def test_get_frames_seeks_only_when_keyframe_ahead(video_files):
    reader = cvrl_fast.VideoReader(video_files["h264_bframes_mp4"])  # keyframe every 12 frames
    reader.get_frames([13])
    seeks = reader.stats["seeks"]
    reader.get_frames([22, 23])  # same GOP, ahead of what was decoded: decode forward
    assert reader.stats["seeks"] == seeks
    reader.get_frames([38])  # a later GOP: seek
    assert reader.stats["seeks"] == seeks + 1
    reader.get_frames([2])  # behind: seek back
    assert reader.stats["seeks"] == seeks + 2


def test_get_frames_decodes_each_frame_once_per_call(video_files):
    reader = cvrl_fast.VideoReader(video_files["h264_intra_mp4"])  # every packet is its own frame
    reader.get_frames(list(range(30, 10, -2)) * 3)
    assert reader.stats["frames_decoded"] <= 30 - 10 + 2  # one forward pass (plus decoder delay)


# ------------------------------------------------------------------ errors


def test_get_frames_fails_out_of_range(video_files):
    reader = cvrl_fast.VideoReader(video_files["h264_bframes_mp4"])
    with pytest.raises(IndexError, match=r"frame index 40 out of range \[0, 40\)"):
        reader.get_frames([0, 40])
    with pytest.raises(IndexError, match=r"frame index -1 out of range \[0, 40\)"):
        reader.get_frames([-1])
    with pytest.raises(IndexError, match=r"h264_bframes\.mp4"):
        reader[1000]
    assert reader.get_frames([39]).shape == (1, 64, 96, 3)  # still usable afterwards


def test_get_frames_fails_bad_crop_and_size(video_files):
    reader = cvrl_fast.VideoReader(video_files["h264_bframes_mp4"])
    with pytest.raises(ValueError, match=r"crop .* is not inside the 96x64 frame"):
        reader.get_frames([0], crop=(90, 0, 10, 10))
    with pytest.raises(ValueError, match=r"crop .* is not inside"):
        reader.get_frames([0], crop=(0, 0, 0, 10))
    with pytest.raises(ValueError, match=r"output size must be positive"):
        reader.get_frames([0], size=(0, 10))
    with pytest.raises(ValueError, match=r"crop must be \(x, y, width, height\)"):
        reader.get_frames([0], crop=(0, 0, 10))
    with pytest.raises(TypeError, match=r"must be integers"):
        reader.get_frames([0.5])


def test_get_frames_empty_list(video_files):
    out = cvrl_fast.VideoReader(video_files["h264_bframes_mp4"]).get_frames([])
    assert out.shape == (0, 64, 96, 3)


def test_open_fails_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such video file: '.*nope\.mp4'"):
        cvrl_fast.VideoReader(tmp_path / "nope.mp4")


def test_open_fails_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_bytes(b"this is not a video file at all\n" * 100)
    with pytest.raises(cvrl_fast.DecodeError, match=r"cannot open video '.*notes\.mp4': Invalid data"):
        cvrl_fast.VideoReader(path)
    with pytest.raises(cvrl_fast.DecodeError, match=r"cannot open video '<bytes>'"):
        cvrl_fast.VideoReader(path.read_bytes())


def test_open_fails_no_video_stream(video_files):
    with pytest.raises(cvrl_fast.DecodeError, match=r"no video stream in '.*audio\.m4a'"):
        cvrl_fast.VideoReader(video_files["audio_only_m4a"])


def test_open_fails_empty_and_directory(tmp_path):
    with pytest.raises(cvrl_fast.DecodeError, match=r"buffer is empty"):
        cvrl_fast.VideoReader(b"")
    with pytest.raises(ValueError, match=r"is a directory"):
        cvrl_fast.VideoReader(tmp_path)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(cvrl_fast.DecodeError, match=r"empty\.mp4"):
        cvrl_fast.VideoReader(empty)
    with pytest.raises(TypeError, match=r"path or bytes"):
        cvrl_fast.VideoReader(123)
    with pytest.raises(ValueError, match=r"num_threads"):
        cvrl_fast.VideoReader(empty, num_threads=0)


@pytest.mark.timeout(60)
def test_truncated_file_decodes_what_it_can(video_files, tmp_path):
    data = video_files["h264_bframes_mp4"].read_bytes()  # moov at the end: cut the middle out instead
    faststart = tmp_path / "faststart.mp4"
    _run(["ffmpeg", "-v", "error", "-i", str(video_files["h264_bframes_mp4"]), "-c", "copy", "-movflags",
          "+faststart", str(faststart)])
    data = faststart.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) * 6 // 10])  # the header still lists all 40 frames
    reader = cvrl_fast.VideoReader(truncated)
    assert 0 < reader.num_frames < 40  # what is there, not what the header says
    ref = ffmpeg_frames(faststart)
    n = reader.num_frames
    ok = 0
    for i in range(n):
        try:
            frame = reader.get_frames([i])
        except RuntimeError as err:
            assert "truncated.mp4" in str(err)
            continue
        ok += 1
        if i < n - 4:  # frames well before the cut decode exactly
            assert_frames_match(frame, ref, [i], "truncated")
    assert ok >= n - 4


@pytest.mark.timeout(60)
def test_header_over_reporting_frames_does_not_hang(video_files, tmp_path):
    # AVI main header total-frames (dwTotalFrames, offset 48) and stream header length (strh dwLength)
    # claim a million frames; the file holds 40.
    data = bytearray(video_files["mjpeg_avi"].read_bytes())
    avih = data.find(b"avih")
    assert data[:4] == b"RIFF" and avih > 0
    assert int.from_bytes(data[avih + 8 + 16: avih + 8 + 20], "little") == 40  # dwTotalFrames
    data[avih + 8 + 16: avih + 8 + 20] = (1_000_000).to_bytes(4, "little")
    strh = data.find(b"strh")
    assert int.from_bytes(data[strh + 8 + 32: strh + 8 + 36], "little") == 40  # dwLength
    data[strh + 8 + 32: strh + 8 + 36] = (1_000_000).to_bytes(4, "little")
    path = tmp_path / "liar.avi"
    path.write_bytes(bytes(data))
    reader = cvrl_fast.VideoReader(path)
    assert reader.num_frames == 40
    ref = ffmpeg_frames(video_files["mjpeg_avi"])
    assert_frames_match(reader.get_frames([39, 0]), ref, [39, 0], "liar.avi")
    with pytest.raises(IndexError, match=r"out of range \[0, 40\)"):
        reader.get_frames([40])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["h264_bframes_mp4", "mpeg2_ts", "vp9_webm", "hevc_mkv"])
def test_corrupt_packets_decode_what_they_can(video_files, tmp_path, name):
    """Garbage over the middle of the file: no crash or hang; frames decode or raise RuntimeError."""
    data = bytearray(video_files[name].read_bytes())
    rng = np.random.default_rng(0)
    start, stop = len(data) // 3, len(data) // 3 + len(data) // 8
    data[start:stop] = rng.integers(0, 256, stop - start, dtype=np.uint8).tobytes()
    path = tmp_path / ("corrupt_" + video_files[name].name)
    path.write_bytes(bytes(data))
    try:
        reader = cvrl_fast.VideoReader(path)
    except (ValueError, RuntimeError) as err:
        assert path.name in str(err)
        return
    decoded = 0
    for indices in [list(range(reader.num_frames)), [reader.num_frames - 1, 0], [reader.num_frames // 2]]:
        try:
            out = reader.get_frames(indices)
            assert out.shape[0] == len(indices)
            decoded += len(indices)
        except RuntimeError as err:
            assert path.name in str(err) and "could not decode frame" in str(err)
    for i in range(reader.num_frames):  # frame by frame: whatever decodes, decodes
        try:
            reader.get_frames([i])
            decoded += 1
        except RuntimeError as err:
            assert path.name in str(err)
    assert decoded > 0


# ------------------------------------------------------------------ resources and threads


# The memory checks run in a fresh interpreter: by this point the test process has loaded TensorFlow and
# its thread pools, whose allocator arenas move RSS by megabytes on their own and would hide (or fake) a
# leak. The child prints RSS growth in MB after a warm-up.
_LEAK_CHILD = """
import gc, sys, psutil, cvrl_fast

path = sys.argv[1]
data = open(path, "rb").read()
mode = sys.argv[2]
cycles = int(sys.argv[3])

def rss():
    return psutil.Process().memory_info().rss / 2**20

def cycle(k):
    if mode == "fail":
        try:
            cvrl_fast.VideoReader(path)
        except RuntimeError:
            return
        raise AssertionError("expected RuntimeError")
    reader = cvrl_fast.VideoReader(path if k % 2 else data)
    reader.get_frames([k % 25, 3], crop=(1, 1, 8, 8) if k % 3 == 0 else None,
                      size=(8, 8) if k % 5 == 0 else None)
    if k % 4 == 0:
        reader.close()
    del reader

for k in range(200):  # warm-up: allocator pools, codec tables
    cycle(k)
gc.collect()
before = rss()
for k in range(cycles):
    cycle(k)
gc.collect()
print(rss() - before)
"""


def _rss_growth_mb(path, mode: str, cycles: int) -> float:
    out = subprocess.run([sys.executable, "-c", _LEAK_CHILD, str(path), mode, str(cycles)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(asan_active(), reason="ASan keeps freed memory resident: RSS proves nothing")
def test_open_decode_close_cycles_do_not_leak(video_files):
    grown = _rss_growth_mb(video_files["tiny_16x16_mp4"], "decode", 5000)
    assert grown < 4.0, f"resident memory grew {grown:.1f} MB over 5000 open/decode/close cycles"


@pytest.mark.skipif(asan_active(), reason="ASan keeps freed memory resident: RSS proves nothing")
def test_open_fails_do_not_leak(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500)
    grown = _rss_growth_mb(bad, "fail", 2000)
    assert grown < 4.0, f"resident memory grew {grown:.1f} MB over 2000 failed opens"


def test_separate_readers_in_threads(video_files):
    names = ["h264_bframes_mp4", "hevc_mkv", "vp9_webm", "h264_10bit_mp4"]
    lists = {name: random_index_lists(40, seed=k) for k, name in enumerate(names)}
    expected = {name: [cvrl_fast.VideoReader(video_files[name]).get_frames(ix) for ix in lists[name]]
                for name in names}
    results, errors = {}, []

    def work(name):
        try:
            reader = cvrl_fast.VideoReader(video_files[name], num_threads=2)
            results[name] = [reader.get_frames(ix) for ix in lists[name] for _ in range(3)][::3]
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(name,)) for name in names * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for name in names:
        for got, want in zip(results[name], expected[name]):
            np.testing.assert_array_equal(got, want)


def test_get_frames_releases_the_gil(clip_dir):
    """While one thread decodes, the main thread keeps running Python (no gap near the decode's length)."""
    reader = cvrl_fast.VideoReader(pathlib.Path(clip_dir) / "bigbuckbunny.mp4")
    indices = list(range(90))  # long enough (most of a second) that a held GIL would show
    longest_gap, call_seconds = gil_gap_check(lambda: reader.get_frames(indices))
    assert longest_gap < 0.5 * call_seconds, (longest_gap, call_seconds)


# ------------------------------------------------------------------ fuzzing

FUZZ_SCRIPT = r"""
import os, random, sys
import cvrl_fast
seed, iterations, files = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
rng = random.Random(seed)
for it in range(iterations):
    path = rng.choice(files)
    data = bytearray(open(path, "rb").read())
    mode = rng.choice(["flip", "block", "zero", "truncate"])
    if mode == "flip":
        for _ in range(rng.randint(1, 50)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif mode in ("block", "zero"):
        a = rng.randrange(len(data))
        b = min(len(data), a + rng.randint(1, 5000))
        data[a:b] = os.urandom(b - a) if mode == "block" else bytes(b - a)
    else:
        data = data[: rng.randrange(1, len(data))]
    try:
        reader = cvrl_fast.VideoReader(bytes(data))
    except (ValueError, RuntimeError) as err:
        assert "<bytes>" in str(err), err
        continue
    for _ in range(3):
        indices = [rng.randrange(reader.num_frames) for _ in range(rng.randint(1, 8))]
        crop = (0, 0, max(1, reader.width // 2), max(1, reader.height // 2)) if rng.random() < 0.3 else None
        try:
            out = reader.get_frames(indices, crop=crop, size=(17, 23) if rng.random() < 0.3 else None)
            assert out.shape[0] == len(indices)
        except RuntimeError as err:
            assert "could not decode" in str(err), err
print("survived", iterations)
"""


def _fuzz(video_files, seed: int, iterations: int, timeout: float) -> None:
    files = [str(video_files[name]) for name in DECODE_CASES]
    proc = subprocess.run([os.sys.executable, "-c", FUZZ_SCRIPT, str(seed), str(iterations), *files],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0 and f"survived {iterations}" in proc.stdout, (
        f"fuzz seed {seed}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def test_damaged_files_never_crash_or_hang(video_files):
    """Random byte flips, garbage blocks, zeroed blocks and truncations of every test video, decoded in
    a child process: it must exit cleanly (exceptions only), within the time limit."""
    _fuzz(video_files, seed=0, iterations=40, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 6))
def test_damaged_files_never_crash_or_hang_more(video_files, seed):
    _fuzz(video_files, seed=seed, iterations=300, timeout=600)


def test_close_and_context_manager(video_files):
    path = video_files["tiny_16x16_mp4"]
    with cvrl_fast.VideoReader(path) as reader:
        assert not reader.closed
        assert reader.get_frames([0]).shape == (1, 16, 16, 3)
    assert reader.closed and "closed" in repr(reader)
    reader.close()  # idempotent


def test_get_frames_fails_after_close(video_files):
    reader = cvrl_fast.VideoReader(video_files["tiny_16x16_mp4"])
    reader.close()
    with pytest.raises(ValueError, match=r"closed VideoReader"):
        reader.get_frames([0])
    with pytest.raises(ValueError, match=r"closed VideoReader"):
        reader.num_frames
