"""sample_pair, PairLoader and pretrain_dataset: end-to-end parity, determinism, sharding, bad files,
resume, shutdown, TFRecord input (issue 3 "Tests")."""
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import cvrl_fast
from cvrl_fast import AugmentConfig, PairLoader, sample_pair
from cvrl_fast import _C
from cvrl_fast._augment import apply_view
from conftest import asan_active, sanitizer_active

ROOT = pathlib.Path(__file__).resolve().parent.parent
SMALL = AugmentConfig(num_frames=4, crop_size=24)


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("loader_media")
    files = {}
    for i, (seconds, rate) in enumerate([(2.0, 25), (2.4, 25), (3.0, 30), (1.0, 25), (2.0, 24), (1.6, 25)]):
        p = d / f"clip{i}.mp4"
        _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=80x56:rate={rate}:duration={seconds}", "-vf",
                f"hue=h={40 * i}", "-c:v", "libx264", "-g", "12", "-pix_fmt", "yuv420p", p)
        files[f"clip{i}"] = p
    # A still image, losslessly encoded: every decoded frame is identical.
    png = d / "still.png"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=80x56:rate=1:duration=1", "-frames:v", "1", png)
    still = d / "still.mp4"
    _ffmpeg("-loop", "1", "-i", png, "-t", "2", "-r", "25", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", still)
    files["still"] = still
    garbage = d / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    files["garbage"] = garbage
    truncated = d / "truncated.mp4"
    truncated.write_bytes(files["clip0"].read_bytes()[:1500])
    files["truncated"] = truncated
    return files


def _good(media):
    return [str(media[f"clip{i}"]) for i in range(6)]


def _collect(loader):
    v1, v2, idx = [], [], []
    for b in loader:
        v1.append(b["view1"].copy())
        v2.append(b["view2"].copy())
        idx.append(b["index"].copy())
    return np.concatenate(v1), np.concatenate(v2), np.concatenate(idx)


# ---- sample_pair ----

def test_sample_pair_matches_full_decode_then_augment(media):
    """Crop-window decode + augment == full-frame decode, crop, augment (bit-exact)."""
    path = str(media["clip2"])  # 30 fps: exercises the 25 fps index-space mapping
    v1, v2, info = sample_pair(path, 5, SMALL, return_params=True)
    reader = _C.VideoReader(path)
    frame_map = _C.fixed_rate_frame_map(list(reader.frame_pts_seconds), 25.0)
    assert info["num_frames"] == len(frame_map) == 75
    frames = reader.get_frames(list(range(reader.num_frames)), None, None)
    for view, out in (("view1", v1), ("view2", v2)):
        clip = frames[[frame_map[i] for i in info[view]["indices"]]]
        np.testing.assert_array_equal(out, apply_view(clip, info[view], SMALL))


def test_sample_pair_default_config_shapes(media):
    v1, v2 = sample_pair(str(media["clip0"]), 0)
    assert v1.shape == v2.shape == (16, 224, 224, 3) and v1.dtype == np.uint8
    f1, _ = sample_pair(str(media["clip0"]), 0, output_dtype=np.float32)
    assert f1.dtype == np.float32
    np.testing.assert_array_equal(np.floor(f1 * 255 + 0.5).astype(np.uint8), v1)


def test_sample_pair_still_video_views_are_still(media):
    cfg = AugmentConfig(num_frames=8, crop_size=32, jitter_prob=1.0, solarize_prob=(0.5, 0.5))
    for seed in range(3):
        for view in sample_pair(str(media["still"]), seed, cfg):
            assert all(np.array_equal(view[0], view[t]) for t in range(1, len(view)))
            assert view.std() > 5  # not a blank clip


def test_sample_pair_is_deterministic_and_keyed(media):
    path = str(media["clip1"])
    a = sample_pair(path, 3, SMALL)
    b = sample_pair(path, 3, SMALL)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = sample_pair(path, 4, SMALL)
    assert not np.array_equal(a[0], c[0])


def test_sample_pair_from_bytes_equals_path(media):
    path = media["clip1"]
    a = sample_pair(str(path), 3, SMALL)
    b = sample_pair(path.read_bytes(), 3, SMALL)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_sample_pair_short_video_wraps(media):
    _, _, info = sample_pair(str(media["clip3"]), 1, AugmentConfig(crop_size=16), return_params=True)
    assert info["num_frames"] == 25 and info["offset_range"] == 25
    for view in ("view1", "view2"):
        idx = info[view]["indices"]
        assert idx == [(idx[0] + 2 * k) % 25 for k in range(16)]


def test_sample_pair_fails(media):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        sample_pair("/nonexistent/nope.mp4", 0, SMALL)
    with pytest.raises(cvrl_fast.DecodeError, match="garbage.mp4"):
        sample_pair(str(media["garbage"]), 0, SMALL)
    with pytest.raises(ValueError, match="output_dtype"):
        sample_pair(str(media["clip0"]), 0, SMALL, output_dtype=np.float64)


# ---- TFRecord (reference format) ----

@pytest.fixture(scope="module")
def tfrecord_file(media, tmp_path_factory):
    pytest.importorskip("tensorflow")
    from cvrl_fast.tfrecord import write_tfrecord

    path = tmp_path_factory.mktemp("tfr") / "videos.tfrecord"
    write_tfrecord(str(path), [str(media["clip0"]), str(media["clip2"]), str(media["clip3"])],
                   labels=[[1], [2, 5], [3]], fps=25.0)
    return path


def test_tfrecord_is_reference_format(tfrecord_file):
    import tensorflow as tf

    records = list(tf.data.TFRecordDataset(str(tfrecord_file)))
    assert len(records) == 3 == len(_C.index_tfrecord(str(tfrecord_file)))
    ctx, seq = tf.io.parse_single_sequence_example(
        records[1], context_features={"clip/label/index": tf.io.VarLenFeature(tf.int64)},
        sequence_features={"image/encoded": tf.io.FixedLenSequenceFeature([], tf.string)})
    assert list(tf.sparse.to_dense(ctx["clip/label/index"]).numpy()) == [2, 5]
    assert seq["image/encoded"].shape[0] == 75  # 3 s resampled to 25 fps
    frames, labels, fps = _C.parse_video_record(records[1].numpy())
    assert labels == [2, 5] and fps == 25.0 and frames[7] == seq["image/encoded"][7].numpy()


def test_jpeg_window_decode_equals_tf_full_decode(tfrecord_file):
    import tensorflow as tf

    frames, _, _ = _C.parse_video_record(next(iter(tf.data.TFRecordDataset(str(tfrecord_file)))).numpy())
    full = tf.io.decode_jpeg(frames[3], channels=3).numpy()
    h, w, _ = full.shape
    rng = np.random.default_rng(0)
    windows = [(0, 0, w, h), (3, 5, 40, 30), (17, 9, 63, 47), (w - 9, h - 7, 9, 7), (8, 8, 16, 16)]
    for _ in range(40):
        bw, bh = int(rng.integers(1, w + 1)), int(rng.integers(1, h + 1))
        windows.append((int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1)), bw, bh))
    for x, y, bw, bh in windows:
        np.testing.assert_array_equal(_C.jpeg_decode_window(frames[3], x, y, bw, bh), full[y:y + bh, x:x + bw])


def test_jpeg_window_decode_fails(tfrecord_file):
    import tensorflow as tf

    frames, _, _ = _C.parse_video_record(next(iter(tf.data.TFRecordDataset(str(tfrecord_file)))).numpy())
    with pytest.raises(ValueError, match="outside"):
        _C.jpeg_decode_window(frames[0], 70, 0, 20, 10)
    with pytest.raises(cvrl_fast.DecodeError, match="bad JPEG"):
        _C.jpeg_decode_window(b"\xff\xd8garbage", 0, 0, 4, 4)
    with pytest.raises(cvrl_fast.DecodeError, match="bad JPEG"):
        _C.jpeg_decode_window(frames[0][: len(frames[0]) // 3], 0, 0, 80, 56)


def test_jpeg_window_decode_at_reduced_scale_equals_tf_ratio_decode(tfrecord_file):
    """IDCT scaling (jpeg_dct_scaling): TF's decode_jpeg(ratio=d) uses libjpeg's scale_denom too."""
    import tensorflow as tf

    frames, _, _ = _C.parse_video_record(next(iter(tf.data.TFRecordDataset(str(tfrecord_file)))).numpy())
    rng = np.random.default_rng(1)
    for denom in (2, 4, 8):
        full = tf.io.decode_jpeg(frames[5], channels=3, ratio=denom, dct_method="INTEGER_FAST").numpy()
        h, w, _ = full.shape
        windows = [(0, 0, w, h)]
        for _ in range(15):
            bw, bh = int(rng.integers(1, w + 1)), int(rng.integers(1, h + 1))
            windows.append((int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1)), bw, bh))
        for x, y, bw, bh in windows:
            np.testing.assert_array_equal(_C.jpeg_decode_window(frames[5], x, y, bw, bh, denom),
                                          full[y:y + bh, x:x + bw], err_msg=f"1/{denom} {(x, y, bw, bh)}")


def test_jpeg_window_decode_at_reduced_scale_fails(tfrecord_file):
    import tensorflow as tf

    frames, _, _ = _C.parse_video_record(next(iter(tf.data.TFRecordDataset(str(tfrecord_file)))).numpy())
    with pytest.raises(ValueError, match="scale_denom=3 must be 1, 2, 4 or 8"):
        _C.jpeg_decode_window(frames[0], 0, 0, 4, 4, 3)
    full_h, full_w = tf.io.decode_jpeg(frames[0], channels=3).shape[:2]
    with pytest.raises(ValueError, match="outside"):  # the full-size window does not fit the 1/2 frame
        _C.jpeg_decode_window(frames[0], 0, 0, full_w, full_h, 2)


@pytest.fixture(scope="module")
def large_tfrecord(clip_dir, tmp_path_factory):
    """Frames with short side 288 from real footage: crops of 0.9+ of the area at output 64 are >= 2x."""
    pytest.importorskip("tensorflow")
    from cvrl_fast.tfrecord import write_tfrecord

    path = tmp_path_factory.mktemp("tfr_large") / "large.tfrecord"
    write_tfrecord(str(path), [str(clip_dir / "bikes.mp4")], fps=25.0, short_side=288)
    return path


def test_jpeg_dct_scaling_approximates_an_antialiased_resize(large_tfrecord):
    """Reducing in the IDCT first is an area-style prefilter: the result is closer to TF's antialiased
    resize of the full-resolution crop than the full-scale (aliased) bilinear path is, with the same
    geometry and colour."""
    import tensorflow as tf

    base = dict(num_frames=6, crop_size=64, area_range=(0.9, 1.0), jitter_prob=0.0, grayscale_prob=0.0,
                blur_prob=(0.0, 0.0), solarize_prob=(0.0, 0.0), flip_prob=0.0, parity=False)
    full = sample_pair((str(large_tfrecord), 0), 3, AugmentConfig(**base), return_params=True)
    scaled = sample_pair((str(large_tfrecord), 0), 3, AugmentConfig(**base, jpeg_dct_scaling=True),
                         return_params=True)
    assert full[2] == scaled[2]  # the same draw: only the decode differs
    frames, _, _ = _C.parse_video_record(next(iter(tf.data.TFRecordDataset(str(large_tfrecord)))).numpy())
    for v in (0, 1):
        x, y, w, h = full[2][f"view{v + 1}"]["crop"]
        assert min(w, h) >= 4 * 64  # 1/4 applies
        crops = np.stack([tf.io.decode_jpeg(frames[i], channels=3, dct_method="INTEGER_FAST").numpy()[y:y + h, x:x + w]
                          for i in full[2][f"view{v + 1}"]["indices"]]).astype(np.float32)
        oracle = tf.image.resize(crops, (64, 64), method="bilinear", antialias=True).numpy()
        err_full = np.abs(full[v] - oracle).mean()
        err_scaled = np.abs(scaled[v] - oracle).mean()
        assert np.abs(full[v].astype(np.int16) - scaled[v]).any()  # the reduced IDCT did run
        assert err_scaled < 0.8 * err_full, (err_scaled, err_full)
        assert abs(float(scaled[v].mean()) - float(oracle.mean())) < 1.0


def test_jpeg_dct_scaling_only_when_boxes_are_twice_the_output(large_tfrecord):
    """With boxes smaller than 2x the output, the reduced decode is not used: identical bytes."""
    base = dict(num_frames=4, crop_size=224, area_range=(0.3, 1.0), parity=False)
    a = sample_pair((str(large_tfrecord), 0), 5, AugmentConfig(**base))
    b = sample_pair((str(large_tfrecord), 0), 5, AugmentConfig(**base, jpeg_dct_scaling=True))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_jpeg_dct_scaling_fails_in_parity_mode():
    with pytest.raises(ValueError, match="jpeg_dct_scaling=True .* needs parity=False"):
        AugmentConfig(jpeg_dct_scaling=True)


def test_tfrecord_pair_matches_reference_tf_pipeline(tfrecord_file):
    """TFRecord path end to end vs the reference: decode every JPEG with TF, crop, TF ops."""
    import tensorflow as tf
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from test_augment import tf_reference
    finally:
        sys.path.pop(0)
    cfg = AugmentConfig(num_frames=6, crop_size=32, jitter_prob=0.9)
    frames, _, _ = _C.parse_video_record(list(tf.data.TFRecordDataset(str(tfrecord_file)))[1].numpy())
    decoded = np.stack([tf.io.decode_jpeg(f, channels=3).numpy() for f in frames])
    for seed in range(3):
        v1, v2, info = sample_pair((str(tfrecord_file), 1), seed, cfg, return_params=True)
        for view, out in (("view1", v1), ("view2", v2)):
            ref = tf_reference(decoded[info[view]["indices"]], info[view], cfg)
            assert np.abs(out.astype(int) - ref).max() <= 1


def test_loader_reads_tfrecords(tfrecord_file):
    with PairLoader([str(tfrecord_file)], batch_size=3, seed=0, num_threads=2, config=SMALL, epochs=2) as ld:
        v1, v2, idx = _collect(ld)
    assert v1.shape == (6, 4, 24, 24, 3) and sorted(idx[:3]) == [0, 1, 2] and sorted(idx[3:]) == [0, 1, 2]
    assert ld.stats["skipped"] == []


def test_index_tfrecord_fails(tmp_path, tfrecord_file):
    bad = tmp_path / "bad.tfrecord"
    data = bytearray(tfrecord_file.read_bytes())
    data[3] ^= 0xFF  # corrupt the first length field
    bad.write_bytes(bytes(data))
    with pytest.raises(cvrl_fast.DecodeError, match="CRC.*bad.tfrecord"):
        _C.index_tfrecord(str(bad))
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(tfrecord_file.read_bytes()[:100])
    with pytest.raises(cvrl_fast.DecodeError, match="truncated"):
        _C.index_tfrecord(str(cut))
    with pytest.raises(cvrl_fast.DecodeError, match="malformed SequenceExample"):
        _C.parse_video_record(b"\x12\x05abc")


# ---- PairLoader ----

def test_loader_batches_match_sample_pair(media):
    paths = _good(media)
    with PairLoader(paths, batch_size=4, seed=9, num_threads=2, config=SMALL, epochs=1) as ld:
        batch = next(iter(ld))
    assert batch["view1"].shape == (4, 4, 24, 24, 3) and batch["view1"].dtype == np.uint8
    for row, source_id in enumerate(batch["index"]):
        v1, v2 = sample_pair(paths[source_id], 9, SMALL, epoch=0, index=int(source_id))
        np.testing.assert_array_equal(batch["view1"][row], v1)
        np.testing.assert_array_equal(batch["view2"][row], v2)


def test_loader_deterministic_across_threads_and_batch_sizes(media):
    paths = _good(media)
    runs = []
    for threads, batch in [(1, 4), (2, 2), (3, 3)]:
        with PairLoader(paths, batch_size=batch, seed=1, num_threads=threads, config=SMALL, epochs=2) as ld:
            runs.append(_collect(ld))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)
    # Each epoch visits every source once, in a seed-dependent order.
    idx = runs[0][2]
    assert sorted(idx[:6]) == list(range(6)) and sorted(idx[6:]) == list(range(6))
    assert list(idx[:6]) != list(idx[6:12]) or list(idx[:6]) != list(range(6))


def test_loader_zero_copy_buffers(media):
    with PairLoader(_good(media), batch_size=2, seed=0, num_threads=1, config=SMALL, epochs=1) as ld:
        b = next(iter(ld))
        assert not b["view1"].flags.owndata and b["view1"].base is not None
        assert b["view1"].ctypes.data % 64 == 0
        kept = b["view1"].copy()
        for _ in ld:
            pass
    np.testing.assert_array_equal(b["view1"], kept)  # buffers outlive the loader while referenced


def test_loader_sharding_is_disjoint(media):
    paths = _good(media)
    seen = []
    for shard in range(2):
        with PairLoader(paths, batch_size=1, seed=0, num_threads=1, config=SMALL, epochs=1, shard_index=shard,
                        num_shards=2) as ld:
            seen.append(set(_collect(ld)[2].tolist()))
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(6))


def test_loader_skips_and_counts_bad_files(media, caplog, capfd):
    paths = _good(media)[:3] + [str(media["garbage"]), str(media["truncated"])]
    with caplog.at_level("WARNING", logger="cvrl_fast"):
        with PairLoader(paths, batch_size=5, seed=0, num_threads=2, config=SMALL, epochs=2) as ld:
            v1, _, idx = _collect(ld)
            stats = ld.stats
    assert len(idx) == 10 and set(idx.tolist()) <= {0, 1, 2}  # every row is a good video
    skipped = dict(stats["skipped"])
    assert set(skipped) == {str(media["garbage"]), str(media["truncated"])}
    assert stats["failed_attempts"] >= 2 and stats["samples"] == 10
    # Logged through Python logging, once per file, with the reason; the engine prints nothing itself.
    records = [r for r in caplog.records if r.name == "cvrl_fast"]
    assert sorted(r.getMessage() for r in records) == sorted(f"skipping {p}: {skipped[p]}" for p in paths[3:])
    assert all(r.levelname == "WARNING" for r in records)
    assert "skipping" not in capfd.readouterr().err


def test_loader_skips_and_counts_bad_files_fails(media, caplog):
    """log_skips=False: counted in stats, nothing logged."""
    paths = _good(media)[:3] + [str(media["garbage"])]
    with caplog.at_level("DEBUG", logger="cvrl_fast"):
        with PairLoader(paths, batch_size=4, seed=0, num_threads=2, config=SMALL, epochs=2, log_skips=False) as ld:
            _collect(ld)
            stats = ld.stats
    assert [s[0] for s in stats["skipped"]] == [str(media["garbage"])]
    assert [r for r in caplog.records if r.name == "cvrl_fast"] == []


def test_loader_skip_is_deterministic(media):
    paths = _good(media)[:3] + [str(media["garbage"])]
    runs = []
    for threads in (1, 2):
        with PairLoader(paths, batch_size=3, seed=4, num_threads=threads, config=SMALL, epochs=3,
                        log_skips=False) as ld:
            runs.append(_collect(ld))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_loader_all_bad_fails(media):
    with PairLoader([str(media["garbage"]), str(media["truncated"])], batch_size=2, seed=0, num_threads=2,
                    config=SMALL, log_skips=False) as ld:
        with pytest.raises(RuntimeError, match="every one of the 2 sources failed"):
            next(iter(ld))


def test_loader_state_restore_resumes_exactly(media):
    paths = _good(media)
    kw = dict(batch_size=4, seed=2, num_threads=2, config=SMALL)
    with PairLoader(paths, **kw) as ld:
        full = [next(ld) for _ in range(5)]
    with PairLoader(paths, **kw) as ld:
        for _ in range(3):
            next(ld)
        state = ld.state()
    assert state["next_batch"] == 3
    with PairLoader(paths, state=state, **kw) as ld:
        resumed = [next(ld) for _ in range(2)]
    for a, b in zip(full[3:], resumed):
        np.testing.assert_array_equal(a["view1"], b["view1"])
        np.testing.assert_array_equal(a["index"], b["index"])


def test_loader_state_restore_fails(media):
    paths = _good(media)
    with PairLoader(paths, batch_size=4, seed=2, num_threads=1, config=SMALL) as ld:
        state = ld.state()
    with pytest.raises(ValueError, match="seed"):
        PairLoader(paths, batch_size=4, seed=3, num_threads=1, config=SMALL, state=state)


def test_loader_sources_forms(media, tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\n" + "".join(f"{p},{i}\n" for i, p in enumerate(_good(media)[:3])))
    with PairLoader(str(listing), batch_size=3, seed=0, num_threads=1, config=SMALL, epochs=1) as ld:
        b = next(ld)
        assert sorted(ld.labels(b["index"])) == [[0], [1], [2]]
    directory = pathlib.Path(media["clip0"]).parent
    with PairLoader(str(directory / "clip*.mp4"), batch_size=2, seed=0, num_threads=1, config=SMALL,
                    epochs=1) as ld:
        assert len(_collect(ld)[2]) == 6


def test_source_list_is_read_like_the_evaluation_tools(media, tmp_path):
    """One parser (read_list_file) for both: whitespace or commas, comments, header, relative paths."""
    from cvrl_fast import evaluation
    from cvrl_fast._loader import resolve_sources

    paths = _good(media)[:3]
    for p in paths:
        (tmp_path / pathlib.Path(p).name).symlink_to(p)
    listing = tmp_path / "list.txt"
    listing.write_text("video label\n# a comment\n\n" +
                       "".join(f"{pathlib.Path(p).name} {i}\n" for i, p in enumerate(paths)))
    refs, labels = resolve_sources(str(listing))
    assert [r.path for r in refs] == [str(tmp_path / pathlib.Path(p).name) for p in paths]
    assert labels == [[0], [1], [2]]
    eval_paths, eval_labels, _ = evaluation.read_labelled_sources(str(listing))
    assert eval_paths == [r.path for r in refs] and eval_labels == [0, 1, 2]


def test_source_list_is_read_like_the_evaluation_tools_fails(media, tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_text(f"{_good(media)[0]},walking\n")
    with pytest.raises(ValueError, match=r"list.csv'?, line 1: labels \['walking'\] must be integers"):
        PairLoader(str(listing), batch_size=1, seed=0)


def test_loader_fails_on_bad_arguments(media):
    paths = _good(media)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        PairLoader(["/nope/missing.mp4"], batch_size=1, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        PairLoader(paths, batch_size=0, seed=0)
    with pytest.raises(ValueError, match="shard_index"):
        PairLoader(paths, batch_size=1, seed=0, shard_index=2, num_shards=2)
    with pytest.raises(ValueError, match="num_threads"):
        PairLoader(paths, batch_size=1, seed=0, num_threads=0)
    with pytest.raises(FileNotFoundError, match="no video or TFRecord"):
        PairLoader(str(ROOT / "csrc"), batch_size=1, seed=0)


def _native_threads():
    import psutil
    return psutil.Process().num_threads()


def test_loader_clean_shutdown_on_break(media):
    before = _native_threads()
    ld = PairLoader(_good(media), batch_size=2, seed=0, num_threads=3, config=SMALL)
    for i, _ in enumerate(ld):
        if i == 1:
            break
    assert _native_threads() >= before + 3
    t0 = time.monotonic()
    ld.close()
    assert time.monotonic() - t0 < 5
    assert _native_threads() <= before
    ld.close()  # idempotent
    with pytest.raises(StopIteration):
        next(ld)


def _run_script(code, timeout=60):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


def test_interpreter_exit_with_live_loader(media):
    code = f"""
        import cvrl_fast
        cfg = cvrl_fast.AugmentConfig(num_frames=4, crop_size=24)
        ld = cvrl_fast.PairLoader({_good(media)!r}, batch_size=2, seed=0, num_threads=2, config=cfg)
        next(ld)
        print("ok", flush=True)
    """
    out = _run_script(code)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_keyboard_interrupt_while_waiting(tmp_path):
    # The batch must take far longer than the signal's delivery, even on an idle machine: 64 pairs from a
    # 720p long-GOP video (each pair decodes dozens of 720p frames) with one thread take many seconds.
    big = tmp_path / "big.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=4", "-c:v", "libx264",
            "-preset", "ultrafast", "-g", "250", "-pix_fmt", "yuv420p", big)
    code = f"""
        import cvrl_fast, signal, sys
        # A shell's background job starts with SIGINT ignored, and Python then keeps it ignored: install
        # the default handler so the test does not depend on how the suite was launched.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        ld = cvrl_fast.PairLoader([{str(big)!r}] * 20, batch_size=64, seed=0, num_threads=1)
        try:
            print("ready", flush=True)
            next(ld)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
        print("finished first", flush=True)
    """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "interrupted" in out, (out, err)
    assert time.monotonic() - t0 < 10



# ---- close() from other threads, batches after close, interpreter exit (issue "Ctrl-C heap corruption") ----

# Markers of a crash or a sanitizer report in a child's stderr; none may appear.
CRASH_MARKERS = ("free()", "Segmentation", "AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error:",
                 "terminate called", "Fatal Python", "double free", "corrupted", "Aborted")


def _assert_clean_stderr(err, tracebacks=0):
    """No crash marker, no "next() called after close()", and exactly `tracebacks` Python tracebacks."""
    for marker in CRASH_MARKERS + ("after close", "Exception ignored", "Exception in thread"):
        assert marker not in err, f"{marker!r} in stderr:\n{err[-3000:]}"
    assert err.count("Traceback (most recent call last)") == tracebacks, err[-3000:]


@pytest.fixture(scope="module")
def slow_video(tmp_path_factory):
    """720p, one keyframe: every pair decodes dozens of 720p frames, so a batch of 64 takes seconds."""
    path = tmp_path_factory.mktemp("slow_video") / "slow.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=4", "-c:v", "libx264",
            "-preset", "ultrafast", "-g", "250", "-pix_fmt", "yuv420p", path)
    return str(path)


def _blocked_next(ld):
    """A thread blocked in next(ld); returns (thread, outcome list: "batch", "stop" or the exception)."""
    outcome = []

    def consume():
        try:
            next(ld)
            outcome.append("batch")
        except StopIteration:
            outcome.append("stop")
        except Exception as e:  # reported by the test's assertion
            outcome.append(e)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    return t, outcome


def test_close_from_another_thread_while_next_waits(slow_video):
    """close() on one thread while another waits in next(): the waiter gets StopIteration (a closed loader is
    exhausted), promptly, and close() returns with the workers joined."""
    before = _native_threads()
    ld = PairLoader([slow_video] * 20, batch_size=64, seed=0, num_threads=1)
    t, outcome = _blocked_next(ld)
    time.sleep(0.3)
    assert t.is_alive() and not outcome  # still waiting for its batch
    t0 = time.monotonic()
    ld.close()
    t.join(10)
    assert not t.is_alive() and outcome == ["stop"], outcome
    assert time.monotonic() - t0 < 10
    assert _native_threads() <= before
    with pytest.raises(StopIteration):  # and so does every later call
        next(ld)


def test_close_from_another_thread_while_next_waits_fails(media):
    """A fatal loader error still reaches a thread waiting in next() as the error, not as an end of data; a
    close() after it is clean."""
    ld = PairLoader([str(media["garbage"]), str(media["truncated"])], batch_size=2, seed=0, num_threads=1,
                    config=SMALL, log_skips=False)
    t, outcome = _blocked_next(ld)
    t.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError), outcome
    assert "every one of the 2 sources failed" in str(outcome[0])
    ld.close()
    with pytest.raises(StopIteration):
        next(ld)


def test_concurrent_close_calls(slow_video):
    """Several threads close the native loader at once while another waits in next(): all return, with the
    workers joined (two concurrent joins of one std::thread used to block forever)."""
    before = _native_threads()
    ld = PairLoader([slow_video] * 20, batch_size=64, seed=0, num_threads=2)
    waiter, outcome = _blocked_next(ld)
    native = ld._native_loader
    start, done = threading.Barrier(4), threading.Barrier(4)
    joined = []

    def closer():
        start.wait()
        native.close()
        # Here: the 4 closers, maybe the waiter, and no worker (2 workers would make it before + 6).
        joined.append(_native_threads() <= before + 5)
        done.wait()

    closers = [threading.Thread(target=closer, daemon=True) for _ in range(4)]
    for c in closers:
        c.start()
    for c in closers + [waiter]:
        c.join(20)
    assert not any(c.is_alive() for c in closers + [waiter]), "close() calls hung"
    assert joined == [True] * 4 and outcome == ["stop"], (joined, outcome)
    assert native.closed and native.next() is None
    ld.close()  # the wrapper's own close after the native one: idempotent


def test_batches_stay_valid_after_close_over_many_cycles(media):
    """Start/stop cycles that keep their batches after close() (and after the loader is gone, pool
    included), with a consumer thread closed mid-wait in every other cycle: every kept array still holds
    exactly the pixels it had when it was returned."""
    paths = _good(media)
    kept, copies = [], []
    for cycle in range(24):
        ld = PairLoader(paths, batch_size=2, seed=cycle, num_threads=2, config=SMALL, prefetch_batches=2)
        for _ in range(2):
            b = next(ld)
            kept.append(b)
            copies.append({k: v.copy() for k, v in b.items()})
        if cycle % 2:
            t, _ = _blocked_next(ld)  # may get a batch or the end: either way it returns
            ld.close()
            t.join(10)
            assert not t.is_alive()
        else:
            ld.close()
        del ld  # drops the last reference to the native loader and its buffer pool
    for seed in (98, 99):  # fresh loaders would reuse the memory of a kept buffer that had been freed
        with PairLoader(paths, batch_size=2, seed=seed, num_threads=2, config=SMALL) as ld:
            next(ld)
    for b, c in zip(kept, copies):
        for k in c:
            np.testing.assert_array_equal(b[k], c[k])


_WAITING_AT_EXIT = """
    import sys, threading, time
    import cvrl_fast
    ld = cvrl_fast.PairLoader([{video!r}] * 20, batch_size=64, seed=0, num_threads=1)
    {setup}
    threading.Thread(target=consume, daemon=True).start()
    time.sleep(0.3)  # the thread now waits in next() for a batch that takes seconds
    print("exiting", flush=True)
"""


def test_interpreter_exit_while_a_thread_waits_in_next(slow_video):
    """Interpreter exit while a daemon thread waits in next(): the atexit close wakes it with the end of the
    data; rc 0 and nothing on stderr (was: RuntimeError "next() called after close()" in the thread)."""
    setup = "def consume():\n        for _ in ld: pass"
    out = _run_script(_WAITING_AT_EXIT.format(video=slow_video, setup=setup))
    assert out.returncode == 0 and out.stdout.strip() == "exiting", out.stderr[-3000:]
    _assert_clean_stderr(out.stderr)


def test_interpreter_exit_while_a_thread_waits_in_native_next(slow_video):
    """The same with the native loader alone (no atexit close: its workers outlive finalization): the
    waiting thread must never take the GIL back from a destructor (a forced unwind there is
    std::terminate: "terminate called without an active exception", rc -6, in 4 of 5 runs before)."""
    setup = ("native = ld._native_loader\n    cvrl_fast._loader._LIVE_LOADERS.discard(ld)\n"
             "    ld._native_loader = None\n"
             "    def consume():\n        while native.next() is not None: pass")
    for _ in range(3):
        out = _run_script(_WAITING_AT_EXIT.format(video=slow_video, setup=setup))
        assert out.returncode == 0 and out.stdout.strip() == "exiting", (out.returncode, out.stderr[-3000:])
        _assert_clean_stderr(out.stderr)


# ---- tf.data ----

def test_pretrain_dataset_matches_loader(media):
    tf = pytest.importorskip("tensorflow")
    from cvrl_fast.data import pretrain_dataset

    paths = _good(media)
    ds = pretrain_dataset(paths, batch_size=3, seed=5, config=SMALL, num_threads=2, include_index=True)
    assert ds.element_spec["view1"] == tf.TensorSpec((3, 4, 24, 24, 3), tf.uint8)
    got = list(ds.take(3))
    with PairLoader(paths, batch_size=3, seed=5, num_threads=1, config=SMALL) as ld:
        want = [next(ld) for _ in range(3)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g["view1"].numpy(), w["view1"])
        np.testing.assert_array_equal(g["view2"].numpy(), w["view2"])
        np.testing.assert_array_equal(g["index"].numpy(), w["index"])
    # Exact resume through tf.data.
    resumed = list(pretrain_dataset(paths, batch_size=3, seed=5, config=SMALL, start_batch=2).take(1))
    np.testing.assert_array_equal(resumed[0]["view1"].numpy(), want[2]["view1"])


def test_pretrain_dataset_input_context_shards(media):
    tf = pytest.importorskip("tensorflow")
    from cvrl_fast.data import pretrain_dataset

    seen = []
    for pipeline in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        ds = pretrain_dataset(_good(media), batch_size=2, seed=0, input_context=ctx, config=SMALL, epochs=1,
                              include_index=True)
        assert ds.element_spec["view1"].shape[0] == 1  # per-replica batch of a global batch of 2
        seen.append({int(i) for e in ds for i in e["index"].numpy()})
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(6))


def test_pretrain_dataset_break_and_bad_files(media):
    tf = pytest.importorskip("tensorflow")
    from cvrl_fast.data import pretrain_dataset

    paths = _good(media)[:2] + [str(media["garbage"])]
    ds = pretrain_dataset(paths, batch_size=2, seed=0, config=SMALL, include_index=True)
    before = _native_threads()
    for i, e in enumerate(ds):
        assert set(e["index"].numpy().tolist()) <= {0, 1}
        if i == 3:
            break
    del e
    deadline = time.monotonic() + 10
    while _native_threads() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _native_threads() <= before + 2  # loader threads gone once the iterator is dropped


def test_pretrain_dataset_interpreter_exit(media):
    code = f"""
        import tensorflow as tf, cvrl_fast
        from cvrl_fast.data import pretrain_dataset
        cfg = cvrl_fast.AugmentConfig(num_frames=4, crop_size=24)
        it = iter(pretrain_dataset({_good(media)!r}, batch_size=2, seed=0, config=cfg, num_threads=2))
        next(it)
        print("ok", flush=True)
    """
    out = _run_script(code, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
    _assert_clean_stderr(out.stderr)



# One process imports TensorFlow once and forks a trial per run (a fork with one thread is safe), so a
# trial costs a pipeline start and an exit, not a TensorFlow import. Each trial consumes a tf.data pipeline
# over the real clips and either gets SIGINT after a random delay or exits while tf.data's generator thread
# waits in next(). One JSON line per trial.
_SIGINT_TRIALS = r"""
import json, os, random, select, signal, sys, time
n_trials, deadline, seed, workdir, clips = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:]
import tensorflow as tf
import cvrl_fast
from cvrl_fast.data import pretrain_dataset
if len(os.listdir("/proc/self/task")) != 1:
    print(json.dumps({"skip": "more than one thread before fork"}), flush=True)
    sys.exit(0)
rng = random.Random(seed)
t_start = time.monotonic()
for trial in range(n_trials):
    if time.monotonic() - t_start > deadline:
        break
    action = "exit" if trial % 4 == 3 else "sigint"
    delay = rng.uniform(0.0, 1.0)
    err_path = os.path.join(workdir, f"trial{trial}.err")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the trial; KeyboardInterrupt / SystemExit end this interpreter as in a real run
        os.close(r)
        fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 2)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        cfg = cvrl_fast.AugmentConfig(num_frames=4, crop_size=32)
        ds = pretrain_dataset(clips, batch_size=2, seed=trial, config=cfg, num_threads=1)
        for i, e in enumerate(ds):
            if i == 0:
                os.write(w, b"ready")
            float(tf.reduce_mean(tf.cast(e["view1"], tf.float32)))  # a little work per step, like training
            if action == "exit" and i == 2:
                raise SystemExit(0)  # while the generator thread waits in next() for the next batch
    os.close(w)
    ready = bool(select.select([r], [], [], 120)[0] and os.read(r, 8))
    os.close(r)
    if action == "sigint" and ready:
        time.sleep(delay)
        os.kill(pid, signal.SIGINT)
    t0, rc = time.monotonic(), None
    while time.monotonic() - t0 < 90:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.05)
    else:  # hung at exit
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    with open(err_path, errors="replace") as f:
        err = f.read()
    print(json.dumps({"trial": trial, "action": action, "delay": round(delay, 3), "ready": ready, "rc": rc,
                      "exit_s": round(time.monotonic() - t0, 2), "stderr": err[-4000:]}), flush=True)
"""


def _sigint_trials(clip_dir, tmp_path, n_trials, deadline, seed, min_trials):
    pytest.importorskip("tensorflow")
    clips = sorted(str(p) for p in clip_dir.iterdir() if p.suffix in (".mp4", ".mpg"))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")  # numpy's BLAS pool would be a thread at fork time
    out = subprocess.run([sys.executable, "-c", _SIGINT_TRIALS, str(n_trials), str(deadline), str(seed), str(tmp_path),
                          *clips], capture_output=True, text=True, cwd=str(ROOT), env=env, timeout=deadline + 300)
    assert out.returncode == 0, out.stderr[-3000:]
    trials = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if trials and "skip" in trials[0]:
        pytest.skip(trials[0]["skip"])
    assert len(trials) >= min_trials, (len(trials), out.stderr[-2000:])
    for t in trials:
        where = f"trial {t['trial']} ({t['action']}, delay {t['delay']} s, seed {seed}): rc {t['rc']}"
        assert t["ready"], where
        assert t["rc"] == (-signal.SIGINT if t["action"] == "sigint" else 0), f"{where}\n{t['stderr'][-3000:]}"
        assert t["exit_s"] < 60, where
        try:
            _assert_clean_stderr(t["stderr"], tracebacks=1 if t["action"] == "sigint" else 0)
        except AssertionError as e:
            raise AssertionError(f"{where}: {e}") from None
    return trials


def test_pretrain_dataset_sigint_and_exit_are_clean(clip_dir, tmp_path):
    """Ctrl-C at random times during a tf.data pipeline over the real clips (the user report: RuntimeError
    "next() called after close()" after the KeyboardInterrupt, and 1 run in 6 dying in free()), and plain
    exits while the generator thread waits: each trial ends by SIGINT (rc -2) or 0, within a minute, with
    only the KeyboardInterrupt traceback and no crash or sanitizer text."""
    # Under ASan each trial takes about twice as long: give the same number of trials more time.
    _sigint_trials(clip_dir, tmp_path, n_trials=12, deadline=100.0 if asan_active() else 40.0,
                   seed=random.randrange(10**6), min_trials=6)


@pytest.mark.slow
def test_pretrain_dataset_sigint_and_exit_are_clean_stress(clip_dir, tmp_path):
    _sigint_trials(clip_dir, tmp_path, n_trials=60, deadline=400.0, seed=random.randrange(10**6), min_trials=30)


def test_loader_float32_and_partial_batch(media):
    paths = _good(media)[:5]
    with PairLoader(paths, batch_size=2, seed=3, num_threads=2, config=SMALL, epochs=1, drop_remainder=False,
                    output_dtype=np.float32) as ld:
        batches = list(ld)
    assert [len(b["index"]) for b in batches] == [2, 2, 1]  # 5 sources: last batch partial
    b = batches[0]
    assert b["view1"].dtype == np.float32 and 0 <= b["view1"].min() and b["view1"].max() <= 1
    v1, _ = sample_pair(paths[b["index"][0]], 3, SMALL, index=int(b["index"][0]), output_dtype=np.float32)
    np.testing.assert_array_equal(b["view1"][0], v1)


def test_tfrecord_prep_cli(media, tmp_path):
    pytest.importorskip("tensorflow")
    from cvrl_fast.tfrecord import main

    out = tmp_path / "cli.tfrecord"
    assert main([str(out), str(media["clip4"]), "--short-side", "32", "--label", "7"]) == 0
    (off, length), = _C.index_tfrecord(str(out))
    with open(out, "rb") as f:
        f.seek(off)
        frames, labels, fps = _C.parse_video_record(f.read(length))
    assert labels == [7] and fps == 25.0 and len(frames) == 50  # 2 s of 24 fps video at 25 fps
    assert cvrl_fast.decode_jpeg_frames(frames[:1]).shape == (1, 32, 45, 3)  # 56x80 -> short side 32


def test_sample_pair_variable_frame_rate_uses_timestamps(tmp_path):
    """A 25 fps + 10 fps VFR file: the 25 fps index space maps onto frames by timestamp, so a clip
    lasts (T-1)*s/25 seconds wherever it falls."""
    from conftest import _make_vfr

    path = _make_vfr(tmp_path)
    reader = _C.VideoReader(str(path))
    pts = np.asarray(reader.frame_pts_seconds)
    cfg = AugmentConfig(num_frames=8, crop_size=16)
    _, _, info = sample_pair(str(path), 0, cfg, return_params=True)
    frame_map = _C.fixed_rate_frame_map(list(pts), 25.0)
    assert info["num_frames"] == len(frame_map) and abs(len(frame_map) - round((pts[-1] - pts[0] + 0.04) * 25)) <= 1
    assert len(frame_map) > reader.num_frames  # the 10 fps part is resampled up, not stretched in time
    for i, f in enumerate(frame_map):
        t = pts[0] + i / 25.0
        assert pts[f] <= t + 1e-6 and (f + 1 == len(pts) or pts[f + 1] > t + 1e-6)


def test_loader_without_shuffle_keeps_source_order(media):
    with PairLoader(_good(media), batch_size=4, seed=0, num_threads=2, config=SMALL, epochs=2, shuffle=False) as ld:
        idx = _collect(ld)[2]
    assert idx.tolist() == [0, 1, 2, 3, 4, 5] * 2  # epochs in source order, batches straddle epochs


@pytest.mark.skipif(sanitizer_active(), reason="ASan keeps freed memory resident, TSan adds shadow: RSS proves nothing")
def test_loader_create_close_does_not_leak(media):
    import psutil

    proc = psutil.Process()
    paths = _good(media)

    cfg = AugmentConfig(num_frames=8, crop_size=96)  # ~0.9 MB per batch buffer: a leaked pool would show

    def cycle():
        with PairLoader(paths, batch_size=2, seed=0, num_threads=2, config=cfg) as ld:
            next(ld)

    for _ in range(3):
        cycle()  # warm allocator caches and thread-local scratch
    threads, rss = proc.num_threads(), proc.memory_info().rss
    for _ in range(25):
        cycle()
    assert proc.num_threads() <= threads
    assert proc.memory_info().rss - rss < 20 * 2**20  # 25 loaders: no per-loader leak
