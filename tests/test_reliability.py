"""Issue 15 "Reliability": one exception type for bad media, skips through logging, array views the
binding builds, FFmpeg's log level, resident memory and threads over many cycles, and the inputs the
fuzzers found (tests/data/fuzz/). The sanitizer runs are `make test-asan` / `make test-tsan`, the fuzzers
`make fuzz` (README "Guarantees")."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cvrl_fast
from cvrl_fast import AugmentConfig, PairLoader, sample_pair
from cvrl_fast import _C
from conftest import DECODE_CASES, asan_active, tsan_active

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from fuzz import harness  # noqa: E402
from fuzz.tfrecord_bytes import sequence_example, tfrecord  # noqa: E402

SMALL = AugmentConfig(num_frames=4, crop_size=24)


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


def _run_child(code: str, *args, timeout=300):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=str(ROOT))


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    """Eight 64x48 JPEG frames and two 32x24 ones (ffmpeg CLI)."""
    d = tmp_path_factory.mktemp("jpegs")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "8", d / "a%02d.jpg")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x24:rate=25", "-frames:v", "2", d / "b%02d.jpg")
    return [p.read_bytes() for p in sorted(d.glob("a*.jpg"))], [p.read_bytes() for p in sorted(d.glob("b*.jpg"))]


@pytest.fixture(scope="module")
def records(jpegs, tmp_path_factory):
    """A TFRecord file (framing and SequenceExamples written without TensorFlow): record 0 good, record 1
    with a frame of another size, record 2 with a truncated JPEG, record 3 not a SequenceExample."""
    big, small = jpegs
    payloads = [sequence_example(big, labels=[3], fps=25.0), sequence_example(big[:4] + small[:1] + big[4:]),
                sequence_example(big[:2] + [big[2][: len(big[2]) // 2]] + big[3:]), b"\x12\x05abc"]
    path = tmp_path_factory.mktemp("tfr") / "mixed.tfrecord"
    path.write_bytes(tfrecord(payloads, _C.tfrecord_masked_crc))
    return path


def test_tfrecord_bytes_writer_is_reference_format(records, jpegs):
    """The test writer's records parse with TensorFlow's own reader and parser (the oracle)."""
    tf = pytest.importorskip("tensorflow")
    raw = list(tf.data.TFRecordDataset(str(records)))
    assert len(raw) == 4 == len(_C.index_tfrecord(str(records)))
    ctx, seq = tf.io.parse_single_sequence_example(
        raw[0], context_features={"clip/label/index": tf.io.VarLenFeature(tf.int64),
                                  "video/fps": tf.io.FixedLenFeature([], tf.float32)},
        sequence_features={"image/encoded": tf.io.FixedLenSequenceFeature([], tf.string)})
    assert list(tf.sparse.to_dense(ctx["clip/label/index"]).numpy()) == [3] and float(ctx["video/fps"]) == 25.0
    assert [f.numpy() for f in seq["image/encoded"]] == jpegs[0]


# ---------------------------------------------------------------- one exception type for bad media


def test_decode_error_is_the_packages_runtime_error():
    assert cvrl_fast.DecodeError is _C.DecodeError and "DecodeError" in cvrl_fast.__all__
    assert issubclass(cvrl_fast.DecodeError, RuntimeError) and not issubclass(cvrl_fast.DecodeError, ValueError)
    import pickle
    err = pickle.loads(pickle.dumps(cvrl_fast.DecodeError("x.mp4: bad")))
    assert type(err) is cvrl_fast.DecodeError and str(err) == "x.mp4: bad"
    assert f"{cvrl_fast.DecodeError.__module__}.{cvrl_fast.DecodeError.__qualname__}" == "cvrl_fast.DecodeError"


def test_every_decoder_raises_decode_error(video_files, jpegs, records, tmp_path):
    """Bad media, whatever the decoder: DecodeError naming the file (or record, or frame)."""
    D = cvrl_fast.DecodeError
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(D, match="garbage.mp4"):
        cvrl_fast.VideoReader(garbage)
    with pytest.raises(D, match="<bytes>"):
        cvrl_fast.VideoReader(garbage.read_bytes())
    with pytest.raises(D, match="no video stream in .*audio.m4a"):
        cvrl_fast.VideoReader(video_files["audio_only_m4a"])
    with pytest.raises(D, match="garbage.mp4"):
        sample_pair(str(garbage), 0, SMALL)
    big, small = jpegs
    with pytest.raises(D, match="frame 1 is not a valid JPEG"):
        cvrl_fast.decode_jpeg_frames([big[0], b"\xff\xd8\xff\xe0 junk"])
    with pytest.raises(D, match="frame 1 is 32x24 but frame 0 is 64x48"):
        cvrl_fast.decode_jpeg_frames([big[0], small[0]])
    with pytest.raises(D, match=r"bad JPEG \(<bytes>\)"):
        _C.jpeg_decode_window(big[0][:300], 0, 0, 64, 48, 1)
    with pytest.raises(D, match="malformed SequenceExample"):
        _C.parse_video_record(b"\x0a\xff\xff\xff\xff\x0f")
    with pytest.raises(D, match=r"no frames in feature_lists\['image/encoded'\]"):
        _C.parse_video_record(sequence_example([]))
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(records.read_bytes()[:-7])
    with pytest.raises(D, match="truncated TFRecord payload in .*cut.tfrecord"):
        _C.index_tfrecord(str(cut))
    # Records of one file: a frame of another size, a truncated frame, not a SequenceExample.
    assert sample_pair((str(records), 0), 0, SMALL)[0].shape == (4, 24, 24, 3)
    with pytest.raises(D, match=r"frame size 32x24 differs from frame 0 \(64x48\) in frame 4 of .*mixed.tfrecord\[record@"):
        sample_pair((str(records), 1), 0, AugmentConfig(num_frames=8, frame_stride=1, crop_size=24,
                                                        target_fps=None))
    with pytest.raises(D, match=r"bad JPEG \(frame 2 of .*mixed.tfrecord\[record@"):
        sample_pair((str(records), 2), 0, AugmentConfig(num_frames=8, frame_stride=1, crop_size=24, target_fps=None))
    with pytest.raises(D, match=r"malformed SequenceExample \(.*mixed.tfrecord\[record@"):
        sample_pair((str(records), 3), 0, SMALL)


def test_every_decoder_raises_decode_error_fails(video_files, jpegs):
    """Bad arguments are not bad media: ValueError / IndexError, never DecodeError."""
    reader = cvrl_fast.VideoReader(video_files["h264_bframes_mp4"])
    cases = [(IndexError, lambda: reader.get_frames([40])),
             (ValueError, lambda: reader.get_frames([0], crop=(90, 0, 10, 10))),
             (ValueError, lambda: reader.get_frames([0], size=(0, 4))),
             (ValueError, lambda: cvrl_fast.decode_jpeg_frames(jpegs[0][:1], size=(0, 5))),
             (ValueError, lambda: _C.jpeg_decode_window(jpegs[0][0], 60, 0, 10, 10, 1)),
             (ValueError, lambda: _C.jpeg_decode_window(jpegs[0][0], 0, 0, 4, 4, 3)),
             (ValueError, lambda: _C.fixed_rate_frame_map([0.0, 1e9], 25.0))]
    for kind, call in cases:
        with pytest.raises(kind) as info:
            call()
        assert not isinstance(info.value, cvrl_fast.DecodeError), info.value


def test_absurd_timestamps_are_bad_media(tmp_path, jpegs):
    """A record whose frame rate is denormal spans ~1e38 s: a DecodeError, not a 1e39-entry frame map
    (the map's length was an int64 cast of that, undefined behaviour, then an allocation that ends the
    process)."""
    path = tmp_path / "slow.tfrecord"
    path.write_bytes(tfrecord([sequence_example(jpegs[0], fps=1e-38)], _C.tfrecord_masked_crc))
    with pytest.raises(cvrl_fast.DecodeError, match=r"timestamps of .*slow.tfrecord\[record@12\] span"):
        sample_pair((str(path), 0), 0, SMALL)
    ok = tmp_path / "ok.tfrecord"  # the same frames at 0.5 fps: 16 s, 400 index frames, fine
    ok.write_bytes(tfrecord([sequence_example(jpegs[0], fps=0.5)], _C.tfrecord_masked_crc))
    _, _, info = sample_pair((str(ok), 0), 0, SMALL, return_params=True)
    assert info["num_frames"] == 400


# ---------------------------------------------------------------- the loader: skip only bad media


def _ref(path, id_, offset=-1, length=0):
    r = _C.SourceRef()
    r.path, r.id, r.record_offset, r.record_length = str(path), id_, offset, length
    return r


def _native_loader(refs, **kw):
    s = SMALL._native()
    args = dict(batch_size=2, seed=0, num_threads=2, shuffle=False, epochs=1, prefetch_batches=1, float_output=False,
                start_batch=0, drop_remainder=True, max_retries=8)
    args.update(kw)
    return _C.PairLoader(refs, s, **args)


def _tasks() -> int:
    return len(os.listdir("/proc/self/task"))


def test_loader_skips_decode_errors(video_files):
    """A record reference into an mp4 reads bytes that are no SequenceExample: DecodeError, skipped, the
    slot refilled from the good source."""
    good = video_files["h264_bframes_mp4"]
    ld = _native_loader([_ref(good, 0), _ref(good, 1, offset=0, length=100)])
    batch = ld.next()
    assert batch is not None and list(batch[2]) == [0, 0]
    assert [s[0] for s in ld.stats()["skipped"]] == [f"{good}[record@0]"]
    assert "malformed SequenceExample" in ld.stats()["skipped"][0][1]
    ld.close()


def test_loader_skips_decode_errors_fails(video_files):
    """Any other exception in a worker is a bug: it stops the loader and next() raises it with its own
    type and message; nothing is skipped, and the workers are gone after close()."""
    good = video_files["h264_bframes_mp4"]
    before = _tasks()
    ld = _native_loader([_ref(good, 0), _ref(good, 1, offset=0, length=-1)])
    with pytest.raises(ValueError, match=r"read_tfrecord: record offset 0 and length -1 of .*h264_bframes.mp4 "
                                         r"must be >= 0") as info:
        ld.next()
    assert not isinstance(info.value, cvrl_fast.DecodeError)
    assert ld.stats()["skipped"] == []
    with pytest.raises(ValueError, match="read_tfrecord"):  # stays failed
        ld.next()
    ld.close()
    assert _tasks() <= before


# ---------------------------------------------------------------- arrays the binding builds


def test_get_frames_arrays_have_the_engines_shape(video_files):
    """Output shapes come from the engine's checks: every accepted (crop, size) gives exactly the window
    (numpy slicing of the full frame is the oracle) or the size; every other one raises ValueError."""
    reader = cvrl_fast.VideoReader(video_files["h264_bframes_mp4"])  # 96x64
    full = reader.get_frames([3, 1])
    big = 2**31 - 5  # x + width overflowed int: the check passed and the read ran off the frame
    crops = [(0, 0, 96, 64), (5, 7, 30, 20), (95, 63, 1, 1), (96, 0, 1, 1), (0, 0, 97, 64), (-1, 0, 4, 4),
             (0, 0, 0, 4), (big, 0, 10, 10), (10, big, 10, 10), (1, 1, big, 3), (0, 0, 2**31 - 1, 2**31 - 1)]
    for crop in crops:
        for size in (None, (7, 9)):
            x, y, w, h = crop
            inside = w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 96 and y + h <= 64
            if not inside:
                with pytest.raises(ValueError, match="is not inside the 96x64 frame"):
                    reader.get_frames([3, 1], crop=crop, size=size)
                continue
            out = reader.get_frames([3, 1], crop=crop, size=size)
            if size is None:
                np.testing.assert_array_equal(out, full[:, y:y + h, x:x + w])
            else:
                assert out.shape == (2, 7, 9, 3)


def test_window_and_augment_bounds_fail_without_overflow(jpegs):
    big = 2**31 - 5
    for x, y, w, h in [(big, 0, 10, 10), (0, big, 10, 10), (1, 0, big, 1)]:
        with pytest.raises(ValueError, match="outside"):
            _C.jpeg_decode_window(jpegs[0][0], x, y, w, h, 1)
        params = _C.ViewParams()
        params.crop = _C.Box(x, y, w, h)
        with pytest.raises(ValueError, match="crop box lies outside the 64x48 frames"):
            _C.augment_clip(np.zeros((2, 48, 64, 3), np.uint8), params, SMALL._native(), False)


def test_loader_batches_carry_their_own_shape(video_files):
    """Partial last batch and float32: each array is exactly rows x T x S x S x 3 of its dtype."""
    paths = [str(video_files[n]) for n in ("h264_bframes_mp4", "vp9_webm", "mpeg4_avi")]
    with PairLoader(paths, batch_size=2, seed=0, num_threads=2, config=SMALL, epochs=1, drop_remainder=False,
                    output_dtype=np.float32) as ld:
        batches = list(ld)
    assert [b["view1"].shape for b in batches] == [(2, 4, 24, 24, 3), (1, 4, 24, 24, 3)]
    assert all(b[v].dtype == np.float32 and b[v].base is not None for b in batches for v in ("view1", "view2"))


# ---------------------------------------------------------------- FFmpeg's log level

_QUIET_CHILD = """
import sys
import cvrl_fast
from cvrl_fast import _C
files, corrupt = sys.argv[1].split(","), sys.argv[2].split(",")
assert _C.ffmpeg_log_level() == 32 and _C.engine_log_offset() == 32, (_C.ffmpeg_log_level(), _C.engine_log_offset())
cfg = cvrl_fast.AugmentConfig(num_frames=4, crop_size=24)
for f in files:
    r = cvrl_fast.VideoReader(f)
    r.get_frames([r.num_frames - 1, 0, r.num_frames // 2], crop=(1, 1, r.width // 2, r.height // 2))
    r.get_frames([min(1, r.num_frames - 1)], size=(17, 23))
    cvrl_fast.sample_pair(f, 0, cfg)
with cvrl_fast.PairLoader(files, batch_size=4, seed=0, num_threads=2, config=cfg, epochs=1) as ld:
    list(ld)
sys.stderr.flush()
print("normal files done", file=sys.stderr, flush=True)
if corrupt != [""]:
    if sys.argv[3] != "default":
        cvrl_fast.set_ffmpeg_log_level(sys.argv[3])
    for f in corrupt:
        try:
            r = cvrl_fast.VideoReader(f)
            r.get_frames(list(range(r.num_frames)))
        except cvrl_fast.DecodeError:
            pass
assert _C.ffmpeg_log_level() == (32 if sys.argv[3] == "default" else cvrl_fast._ffmpeg_log.LEVELS[sys.argv[3]])
print("done")
"""


def _corrupt_copy(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    data = bytearray(src.read_bytes())
    start, stop = len(data) // 3, len(data) // 3 + len(data) // 8
    data[start:stop] = np.random.default_rng(0).integers(0, 256, stop - start, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


# The engine's own decoder contexts for the corrupt files below: FFmpeg prefixes each message with them.
DECODER_PREFIXES = ("[h264 @ ", "[hevc @ ", "[mpeg2video @ ", "[vp9 @ ")


def test_default_decoding_leaves_ffmpeg_alone_and_stderr_quiet(video_files, tmp_path):
    """Without an opt-in the process-wide FFmpeg level stays at FFmpeg's default (info), and decoding
    every test video, with crops, resizes, pairs and a loader, prints nothing. Files with corrupt packets
    get no message from the engine's decoders (demoted; the errors are exceptions); FFmpeg's demuxers and
    parsers, whose contexts the engine cannot reach, may still say what they found."""
    files = ",".join(str(video_files[n]) for n in DECODE_CASES)
    corrupt = ",".join(str(_corrupt_copy(video_files[n], tmp_path / ("bad_" + video_files[n].name)))
                       for n in ("h264_bframes_mp4", "hevc_mkv", "mpeg2_ts", "vp9_webm"))
    out = _run_child(_QUIET_CHILD, files, corrupt, "default")
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr[-3000:]
    normal, _, rest = out.stderr.partition("normal files done\n")
    assert normal == "", normal[-3000:]
    assert not [line for line in rest.splitlines() if line.startswith(DECODER_PREFIXES)], rest[-3000:]


def test_default_decoding_leaves_ffmpeg_alone_and_stderr_quiet_fails(video_files, tmp_path):
    """The opt-in: set_ffmpeg_log_level sets the process-wide level, and the engine's decoders then log at
    their real level, so FFmpeg's own complaints about the corrupt packets reach stderr (FFmpeg is the
    oracle: "[h264 @ ...]" lines)."""
    corrupt = str(_corrupt_copy(video_files["h264_bframes_mp4"], tmp_path / "bad.mp4"))
    out = _run_child(_QUIET_CHILD, str(video_files["tiny_16x16_mp4"]), corrupt, "error")
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr[-3000:]
    rest = out.stderr.partition("normal files done\n")[2]
    assert [line for line in rest.splitlines() if line.startswith("[h264 @ ")], out.stderr[-3000:]


def test_set_ffmpeg_log_level():
    from cvrl_fast._ffmpeg_log import ffmpeg_log_level

    assert _C.engine_log_offset() == 32
    before = _C.ffmpeg_log_level()
    with ffmpeg_log_level("warning"):
        assert _C.ffmpeg_log_level() == 24 and _C.engine_log_offset() == 0
        assert cvrl_fast.set_ffmpeg_log_level(8) == 24 and _C.ffmpeg_log_level() == 8
    assert _C.ffmpeg_log_level() == before and _C.engine_log_offset() == 32


def test_set_ffmpeg_log_level_fails():
    before = _C.ffmpeg_log_level()
    with pytest.raises(ValueError, match="FFmpeg log level 'loud' must be one of quiet, panic"):
        cvrl_fast.set_ffmpeg_log_level("loud")
    with pytest.raises(ValueError, match=r"FFmpeg log level 99 must be in \[-8, 56\]"):
        cvrl_fast.set_ffmpeg_log_level(99)
    with pytest.raises(TypeError, match="must be a name or an int"):
        cvrl_fast.set_ffmpeg_log_level(2.5)
    assert _C.ffmpeg_log_level() == before and _C.engine_log_offset() == 32


# ---------------------------------------------------------------- inputs the fuzzers found


def _fuzz_cases():
    base = ROOT / "tests" / "data" / "fuzz"
    return sorted(p for p in base.glob("*/*") if p.is_file()) if base.is_dir() else []


@pytest.mark.parametrize("case", _fuzz_cases(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fuzz_findings_stay_fixed(case):
    """Each input a fuzz target once crashed or hung on, run through the same target in a child process:
    it must end with an ordinary exception or a result, quickly (make fuzz; README "Guarantees")."""
    out = subprocess.run([sys.executable, "-m", "fuzz.harness", case.parent.name, str(case)], capture_output=True,
                         text=True, timeout=120, cwd=str(ROOT))
    assert out.returncode == 0 and out.stdout.strip().startswith("ok"), (out.returncode, out.stderr[-3000:])


def test_fuzz_harness_flags_unexpected_exceptions(video_files):
    """The harness's oracle: an exception other than the documented ones is a finding."""
    data = video_files["tiny_16x16_mp4"].read_bytes()
    harness.run_one("video", data)  # a good file: no exception
    with pytest.raises(harness.Finding, match="IndexError"):
        harness.check(lambda: [][1], "video")


# ---------------------------------------------------------------- memory and threads over many cycles

# Fresh interpreters: the test process has TensorFlow's thread pools and allocator arenas, which move RSS
# by megabytes on their own. Each child prints the slope of its RSS (MB per cycle) after a warm-up.
_LOADER_CYCLES = """
import os, sys, time, psutil, cvrl_fast
paths, cycles = sys.argv[1].split(","), int(sys.argv[2])
cfg = cvrl_fast.AugmentConfig(num_frames=8, crop_size=64)  # 0.2 MB per batch buffer: a leaked pool shows
tasks = lambda: len(os.listdir("/proc/self/task"))
base, rss = tasks(), []


def threads_after_close():
    # pthread_join returns when the kernel clears the thread's tid, a moment before it reaps the task and
    # drops it from /proc/self/task; under load that moment was seen (one exited worker still listed). A
    # thread that is still running never leaves: wait up to 2 s for the kernel, then report the count.
    for _ in range(200):
        if tasks() == base:
            break
        time.sleep(0.01)
    return tasks()


for k in range(cycles):
    ld = cvrl_fast.PairLoader(paths, batch_size=2, seed=k, num_threads=2, prefetch_batches=2, config=cfg,
                              log_skips=False)
    batch = next(ld)
    if k % 3 == 0:
        next(ld)
    ld.close()
    del ld, batch
    left = threads_after_close() - base
    assert left == 0, f"cycle {k}: {left} threads left after close()"
    if k >= cycles // 5:
        rss.append(psutil.Process().memory_info().rss / 2**20)
# The least-squares slope of RSS over the cycles after the warm-up: a batch kept per cycle shows as
# 0.39 MB/cycle, while glibc returning or keeping freed arenas moves single samples by a
# few MB either way without a trend.
x = list(range(len(rss)))
mx, my = sum(x) / len(x), sum(rss) / len(rss)
print(sum((a - mx) * (b - my) for a, b in zip(x, rss)) / sum((a - mx) ** 2 for a in x))
"""


@pytest.mark.skipif(asan_active() or tsan_active(), reason="sanitizer shadow and quarantine: RSS proves nothing")
def test_loader_start_stop_cycles_are_flat(video_files, tmp_path):
    """100 loaders started, read and closed (a bad file among the sources): after each close() the
    process has exactly the threads it had before, and resident memory has no trend after the first 20
    (slope under 0.1 MB per cycle, a quarter of one kept batch; measured here within +-0.015)."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(range(256)) * 8)
    paths = ",".join([str(video_files[n]) for n in ("h264_bframes_mp4", "vp9_webm", "mpeg4_avi")] + [str(bad)])
    out = _run_child(_LOADER_CYCLES, paths, 100)
    assert out.returncode == 0, out.stderr[-3000:]
    slope = float(out.stdout.strip().splitlines()[-1])
    assert slope < 0.1, f"resident memory grows {slope:.3f} MB per loader start/stop cycle"


@pytest.mark.skipif(asan_active() or tsan_active(), reason="sanitizer shadow and quarantine: RSS proves nothing")
def test_loader_start_stop_cycles_are_flat_fails(video_files):
    """The oracle sees a leak: the same loop keeping every 4th loader alive (threads and pools) fails the
    thread check at once."""
    code = _LOADER_CYCLES.replace("    ld.close()\n    del ld, batch\n",
                                  "    if k % 4:\n        ld.close()\n    else:\n        globals().setdefault('kept', []).append(ld)\n")
    out = _run_child(code, str(video_files["h264_bframes_mp4"]), 8)
    assert out.returncode != 0 and "cycle 0: 2 threads left after close()" in out.stderr, out.stderr[-2000:]
    # ... and the slope sees memory kept: every batch held on to (2 views x 2 x 8 x 64 x 64 x 3 bytes = 0.39 MB
    # per cycle, four times the flat test's bound).
    code = _LOADER_CYCLES.replace("    del ld, batch\n", "    globals().setdefault('held', []).append(batch)\n    del ld\n")
    out = _run_child(code, str(video_files["h264_bframes_mp4"]), 40)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) > 0.3


# ---------------------------------------------------------------- leak detection (make test-asan)

# Under make test-asan each Python process runs LeakSanitizer at exit, before the interpreter's finalization
# (tests/lsan_at_exit.py; Makefile ASAN_LEAK_ENV). The child inherits those settings from this process. It
# uses the engine (decoder, JPEG, TFRecord index, a loader on two threads) and, in the "tensorflow" case,
# TensorFlow first (a TFRecordDataset: TensorFlow's own leaks, tests/lsan.supp) and then the engine from a
# tf.data generator, on a TensorFlow thread. "leak" adds the test hook that loses LEAK bytes in the binding.
LEAK = 3000

_LEAK_CHECK_CHILD = r"""
import sys

import cvrl_fast
from cvrl_fast import AugmentConfig, _C

video, jpeg, records, case, leak = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "leak"


def engine_work():
    reader = cvrl_fast.VideoReader(video)
    assert reader.get_frames([0, 3, 3, 7]).shape[0] == 4
    del reader
    with open(jpeg, "rb") as f:
        assert cvrl_fast.decode_jpeg_frames([f.read()] * 2).shape[0] == 2
    assert len(_C.index_tfrecord(records)) == 4
    with cvrl_fast.PairLoader([video, video], batch_size=2, seed=0, num_threads=2, epochs=1,
                              config=AugmentConfig(num_frames=4, crop_size=24)) as ld:
        next(ld)
    if leak:
        _C._test_leak_bytes(int(sys.argv[6]))


if case == "tensorflow":
    import tensorflow as tf

    assert len(list(tf.data.TFRecordDataset(records))) == 4

    def gen():
        engine_work()
        yield 0

    assert len(list(tf.data.Dataset.from_generator(gen, output_signature=tf.TensorSpec([], tf.int32)))) == 1
else:
    engine_work()
print("child done")
"""


def _leak_check_child(video_files, jpegs, records, tmp_path, case, leak):
    """Runs the child with make test-asan's leak-check settings, after checking that they are on (a
    Makefile that turned them off fails here instead of passing without a check)."""
    env = os.environ
    assert "detect_leaks=1" in env.get("ASAN_OPTIONS", "") and "leak_check_at_exit=0" in env["ASAN_OPTIONS"], \
        f"make test-asan runs with ASAN_OPTIONS=detect_leaks=1:leak_check_at_exit=0, got {env.get('ASAN_OPTIONS')!r}"
    assert env.get("PYTHONMALLOC") == "malloc", "make test-asan runs with PYTHONMALLOC=malloc"
    assert f"suppressions={ROOT / 'tests' / 'lsan.supp'}" in env.get("LSAN_OPTIONS", ""), env.get("LSAN_OPTIONS")
    if case == "tensorflow":
        pytest.importorskip("tensorflow")
    jpeg = tmp_path / "frame.jpg"
    jpeg.write_bytes(jpegs[0][0])
    return _run_child(_LEAK_CHECK_CHILD, video_files["h264_bframes_mp4"], jpeg, records, case,
                      "leak" if leak else "clean", LEAK)


@pytest.mark.skipif(not asan_active(), reason="leak detection runs under the ASan build: make test-asan")
@pytest.mark.parametrize("case", ["engine", "tensorflow"])
def test_asan_leak_check_is_clean(video_files, jpegs, records, tmp_path, case):
    """A process that uses the engine (and TensorFlow, whose own leaks tests/lsan.supp suppresses) passes
    the leak check: exit status 0 and no LeakSanitizer report."""
    out = _leak_check_child(video_files, jpegs, records, tmp_path, case, leak=False)
    assert out.returncode == 0 and "child done" in out.stdout, out.stderr[-4000:]
    assert "LeakSanitizer" not in out.stderr, out.stderr[-4000:]


@pytest.mark.skipif(not asan_active(), reason="leak detection runs under the ASan build: make test-asan")
@pytest.mark.parametrize("case", ["engine", "tensorflow"])
def test_asan_leak_check_is_clean_fails(video_files, jpegs, records, tmp_path, case):
    """The same process losing LEAK bytes in the extension (_C._test_leak_bytes, on a tf.data thread in the
    "tensorflow" case) fails: LeakSanitizer reports exactly that allocation, from bindings.cc, and the
    process exits with status 23 after its program has finished."""
    out = _leak_check_child(video_files, jpegs, records, tmp_path, case, leak=True)
    assert out.returncode == 23 and "child done" in out.stdout, (out.returncode, out.stderr[-4000:])
    assert "ERROR: LeakSanitizer: detected memory leaks" in out.stderr, out.stderr[-4000:]
    assert f"Direct leak of {LEAK} byte(s) in 1 object(s)" in out.stderr and "csrc/bindings.cc" in out.stderr, \
        out.stderr[-4000:]
    assert f"SUMMARY: AddressSanitizer: {LEAK} byte(s) leaked in 1 allocation(s)." in out.stderr, out.stderr[-4000:]
    assert "lsan_at_exit: LeakSanitizer found leaks" in out.stderr, out.stderr[-4000:]


def test_ci_runs_the_sanitizers_and_the_fuzzer_after_the_main_path():
    """.ci/run: make test, test-dali and demo first (the main path fails first), then test-asan, test-tsan
    and a short fuzz run, each a Makefile target (README "Guarantees", "What CI runs")."""
    steps = [line.split()[:2] for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.startswith("make ")]
    assert [s[1] for s in steps] == ["test", "test-dali", "demo", "test-asan", "test-tsan", "fuzz"], steps
    fuzz = next(line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("make fuzz"))
    assert fuzz.split()[2:] == ["SECONDS=120"], fuzz
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test-asan", "test-tsan", "fuzz"):
        assert f"\n{target}: " in makefile, f"Makefile has no {target} target"
