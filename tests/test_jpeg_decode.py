"""decode_jpeg_frames against TensorFlow's decode_jpeg (same libjpeg-turbo) and the ffmpeg CLI (resize).
Default-run budget: about 10 s (mostly importing TensorFlow)."""
from __future__ import annotations

import pathlib
import threading

import numpy as np
import pytest

import cvrl_fast
from conftest import _run, gil_gap_check

tf = pytest.importorskip("tensorflow")


_made: dict[tuple, list[pathlib.Path]] = {}


def make_jpegs(directory: pathlib.Path, pix_fmt: str, count: int = 3, size: str = "97x61") -> list[pathlib.Path]:
    """JPEG frames of a moving test pattern written by the ffmpeg CLI (odd size: exercises edge blocks)."""
    key = (directory, pix_fmt, count, size)
    if key not in _made:
        _made[key] = _write_jpegs(directory, pix_fmt, count, size)
    return _made[key]


def _write_jpegs(directory: pathlib.Path, pix_fmt: str, count: int, size: str) -> list[pathlib.Path]:
    w, h = size.split("x")
    pattern = directory / f"{pix_fmt}_{size}_{count}_%d.jpg"
    _run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25", "-vf",
          f"format=yuv444p,crop={w}:{h}:3:5", "-frames:v", str(count), "-pix_fmt", pix_fmt, "-f", "image2",
          str(pattern)])
    return [directory / f"{pix_fmt}_{size}_{count}_{i}.jpg" for i in range(1, count + 1)]


@pytest.fixture(scope="module")
def jpeg_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("jpegs")


def tf_decode(frames: list[bytes], dct_method: str) -> np.ndarray:
    return np.stack([tf.io.decode_jpeg(f, channels=3, dct_method=dct_method).numpy() for f in frames])


@pytest.mark.parametrize("pix_fmt", ["yuvj420p", "yuvj422p", "yuvj444p", "gray"])
@pytest.mark.parametrize("dct_method", ["INTEGER_ACCURATE", "INTEGER_FAST"])
def test_decode_jpeg_frames_matches_tensorflow(jpeg_dir, pix_fmt, dct_method):
    frames = [p.read_bytes() for p in make_jpegs(jpeg_dir, pix_fmt)]
    out = cvrl_fast.decode_jpeg_frames(frames, dct_method=dct_method)
    assert out.shape == (3, 61, 97, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, tf_decode(frames, dct_method))


def test_decode_jpeg_frames_matches_tensorflow_real_frames(clip_dir):
    # Camera frames encoded by TensorFlow, as the reference's TFRecords hold them.
    reader = cvrl_fast.VideoReader(pathlib.Path(clip_dir) / "bikes.mp4")
    pixels = reader.get_frames([0, 40, 80])
    frames = [tf.io.encode_jpeg(p, quality=90).numpy() for p in pixels]
    out = cvrl_fast.decode_jpeg_frames(frames)
    np.testing.assert_array_equal(out, tf_decode(frames, "INTEGER_ACCURATE"))
    np.testing.assert_array_equal(cvrl_fast.decode_jpeg_frames(frames, dct_method="INTEGER_FAST"),
                                  tf_decode(frames, ""))  # TF's default decode is the fast DCT
    assert np.abs(out.astype(int) - pixels).mean() < 3  # and it is the picture that went in


@pytest.mark.parametrize("pix_fmt", ["yuvj420p", "yuvj444p", "gray"])
def test_decode_jpeg_frames_size_matches_ffmpeg_cli(jpeg_dir, pix_fmt):
    paths = make_jpegs(jpeg_dir, pix_fmt, count=2)
    frames = [p.read_bytes() for p in paths]
    for h, w in [(30, 40), (122, 150), (61, 50)]:
        out = cvrl_fast.decode_jpeg_frames(frames, size=(h, w))
        assert out.shape == (2, h, w, 3)
        for k, path in enumerate(paths):
            raw = _run(["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"scale={w}:{h}:flags=bilinear",
                        "-pix_fmt", "rgb24", "-f", "rawvideo", "-"])
            ref = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
            diff = np.abs(out[k].astype(int) - ref).mean()
            assert diff <= 1.0, f"{pix_fmt} {(h, w)} frame {k}: mean diff {diff:.3f}"


def test_decode_jpeg_frames_empty_list():
    assert cvrl_fast.decode_jpeg_frames([]).shape == (0, 0, 0, 3)


def test_decode_jpeg_frames_fails_bad_jpeg(jpeg_dir):
    good = make_jpegs(jpeg_dir, "yuvj420p", count=1)[0].read_bytes()
    with pytest.raises(cvrl_fast.DecodeError, match=r"frame 1 is not a valid JPEG"):
        cvrl_fast.decode_jpeg_frames([good, b"definitely not a jpeg"])
    with pytest.raises(cvrl_fast.DecodeError, match=r"frame 2 is not a valid JPEG: empty buffer"):
        cvrl_fast.decode_jpeg_frames([good, good, b""])
    with pytest.raises(cvrl_fast.DecodeError, match=r"frame 0 is not a valid JPEG: Premature end"):
        cvrl_fast.decode_jpeg_frames([good[: len(good) // 2]])
    with pytest.raises(cvrl_fast.DecodeError, match=r"frame 1 is not a valid JPEG: Premature end"):
        cvrl_fast.decode_jpeg_frames([good, good[: len(good) // 2]], size=(10, 10))
    # A start-of-image marker and nothing else: libjpeg-turbo's header call "succeeds" with a 0x0 size
    # (this returned an empty (1, 0, 0, 3) array).
    for cut in (b"\xff\xd8", b"\xff\xd8xx", good[:20]):
        with pytest.raises(cvrl_fast.DecodeError, match=r"frame 0 is not a valid JPEG"):
            cvrl_fast.decode_jpeg_frames([cut])
    assert issubclass(cvrl_fast.DecodeError, RuntimeError)


def test_decode_jpeg_frames_fails_mixed_sizes(jpeg_dir):
    a = make_jpegs(jpeg_dir, "yuvj420p", count=1)[0].read_bytes()
    b = make_jpegs(jpeg_dir, "yuvj420p", count=1, size="64x48")[0].read_bytes()
    with pytest.raises(cvrl_fast.DecodeError, match=r"frame 1 is 64x48 but frame 0 is 97x61: all frames must have the same size"):
        cvrl_fast.decode_jpeg_frames([a, b])


def test_decode_jpeg_frames_fails_bad_arguments(jpeg_dir):
    good = make_jpegs(jpeg_dir, "yuvj420p", count=1)[0].read_bytes()
    with pytest.raises(ValueError, match=r"output size must be positive, got \(0, 5\)"):
        cvrl_fast.decode_jpeg_frames([good], size=(0, 5))
    with pytest.raises(ValueError, match=r"dct_method must be"):
        cvrl_fast.decode_jpeg_frames([good], dct_method="FLOAT")


def test_decode_jpeg_frames_in_threads(jpeg_dir):
    frames = [p.read_bytes() for p in make_jpegs(jpeg_dir, "yuvj420p", count=3)] * 20
    expected = cvrl_fast.decode_jpeg_frames(frames)
    results = [None] * 4

    def work(k):
        results[k] = cvrl_fast.decode_jpeg_frames(frames)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results:
        np.testing.assert_array_equal(got, expected)


def test_decode_jpeg_frames_releases_the_gil(clip_dir):
    """While one thread decodes, the main thread keeps running Python (no gap near the decode's length)."""
    pixels = cvrl_fast.VideoReader(pathlib.Path(clip_dir) / "bikes.mp4").get_frames([0, 100])
    frames = [tf.io.encode_jpeg(p, quality=95).numpy() for p in pixels] * 150
    longest_gap, call_seconds = gil_gap_check(lambda: cvrl_fast.decode_jpeg_frames(frames))
    assert longest_gap < 0.5 * call_seconds, (longest_gap, call_seconds)
