"""The demo dataset: classes are defined by motion, not by colour."""
import csv
import os
import pathlib

import numpy as np
import pytest

from cvrl_fast import demo_data
from cvrl_fast._loader import read_list_file


def _render(n_per_class=12, seed=0, look_pool=0):
    videos, labels = [], []
    for label in range(len(demo_data.CLASSES)):
        for i in range(n_per_class):
            rng = np.random.default_rng([seed, label, i])
            videos.append(demo_data.render_video(rng, label, size=48, num_frames=40,
                                                 look_pool=look_pool).astype(np.float32))
            labels.append(label)
    return videos, np.array(labels)


def _nearest_centroid_accuracy(feats, labels, n_train):
    """Leave-some-out check: centroids from the first n_train of each class, accuracy on the rest."""
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    classes = np.unique(labels)
    train = np.concatenate([np.where(labels == c)[0][:n_train] for c in classes])
    test = np.setdiff1d(np.arange(len(labels)), train)
    centroids = np.stack([feats[train][labels[train] == c].mean(0) for c in classes])
    pred = np.argmin(((feats[test, None] - centroids[None]) ** 2).sum(-1), axis=1)
    return float(np.mean(pred == labels[test]))


def _motion_features(v):
    """Spatial spread of frame-difference energy along x and y, and its total: a hand-made motion cue."""
    # Large per-pixel changes only: the object's edges moving, not the slow colour and tint drift.
    diff = (np.abs(np.diff(v.mean(-1), axis=0)) > 40).sum(0).astype(np.float64) + 1e-6
    h, w = diff.shape
    p = diff / diff.sum()
    ys, xs = np.mgrid[0:h, 0:w]
    sx = np.sqrt((p * (xs - (p * xs).sum()) ** 2).sum())
    sy = np.sqrt((p * (ys - (p * ys).sum()) ** 2).sum())
    return [sx / (sx + sy), sx + sy]


@pytest.mark.parametrize("look_pool", [0, 1])  # a look per video; the demo's one shared look
def test_classes_depend_on_motion_not_colour(look_pool):
    videos, labels = _render(look_pool=look_pool)
    colour = np.array([v.reshape(-1, 3).mean(0).tolist() + v.reshape(-1, 3).std(0).tolist() for v in videos])
    motion = np.array([_motion_features(v) for v in videos])
    colour_acc = _nearest_centroid_accuracy(colour, labels, 6)
    motion_acc = _nearest_centroid_accuracy(motion, labels, 6)
    assert colour_acc <= 0.5, colour_acc          # chance is 0.25: colour statistics don't give the class
    assert motion_acc >= 0.75, motion_acc         # a crude motion cue does
    # A single frame carries no motion: horizontal and vertical differ only in time.
    assert motion_acc > colour_acc + 0.3


def test_render_video_is_deterministic():
    a = demo_data.render_video(np.random.default_rng(5), 2, size=32, num_frames=10)
    b = demo_data.render_video(np.random.default_rng(5), 2, size=32, num_frames=10)
    assert a.shape == (10, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)


def test_make_dataset_writes_balanced_lists(tmp_path):
    lists = demo_data.make_dataset(tmp_path, num_train=8, num_val=4, size=32, num_frames=12)
    rows = read_list_file(str(lists["train"]))
    assert [int(fields[0]) for _, _, fields in rows] == [0, 1, 2, 3] * 2
    from cvrl_fast import VideoReader

    r = VideoReader(rows[0][1])
    assert (r.num_frames, r.width, r.height, r.codec) == (12, 32, 32, "h264")


def test_lists_mean_the_same_videos_from_any_cwd(tmp_path, monkeypatch):
    """A list written with a relative output folder from one directory names the same files when read
    from another directory (rows are relative to the list file, as read_list_file reads them)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    lists = demo_data.make_dataset("work/data", num_train=4, num_val=0, size=32, num_frames=8)
    raw = [r for r in csv.reader(open(lists["train"]))][1:]
    assert all(not os.path.isabs(p) and p.startswith("train/") for p, _ in raw)
    monkeypatch.chdir(tmp_path / "b")
    rows = read_list_file(str(tmp_path / "a" / "work" / "data" / "train.csv"))
    assert [p for _, p, _ in rows] == [str(tmp_path / "a" / "work" / "data" / p) for p, _ in raw]
    assert all(os.path.isfile(p) for _, p, _ in rows)


def test_lists_mean_the_same_videos_from_any_cwd_fails_for_cwd_relative_rows(tmp_path, monkeypatch):
    """The old bug, stated as what read_list_file does with a row relative to the cwd: the list's own
    folder is prefixed again and the file is not found."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work" / "data").mkdir(parents=True)
    (tmp_path / "work" / "data" / "v.mp4").write_bytes(b"")
    (tmp_path / "work" / "data" / "train.csv").write_text("path,label\nwork/data/v.mp4,0\n")
    [(_, path, _)] = read_list_file("work/data/train.csv")
    assert path == str(tmp_path / "work" / "data" / "work" / "data" / "v.mp4") and not os.path.exists(path)


def test_make_dataset_fails_without_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_data.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="the ffmpeg CLI is needed"):
        demo_data.make_dataset(tmp_path, num_train=1, num_val=1)


def test_segments_cut_the_appearance_but_not_the_motion():
    """segment_frames > 0: the whole look is redrawn at cuts every segment_frames to 2 x segment_frames
    frames (a frame-wide jump in pixels); without segments no such jump occurs."""
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    cut = demo_data.render_video(rng_a, 0, size=48, num_frames=40, segment_frames=8).astype(np.float32)
    steady = demo_data.render_video(rng_b, 0, size=48, num_frames=40).astype(np.float32)
    change = np.abs(np.diff(cut, axis=0)).mean(axis=(1, 2, 3))
    steady_change = np.abs(np.diff(steady, axis=0)).mean(axis=(1, 2, 3))
    cuts = np.where(change > 10 * np.median(steady_change) + 5)[0] + 1
    assert 2 <= len(cuts) <= 5 and np.all(np.diff(cuts) >= 8)  # one cut every 8 to 15 frames
    assert steady_change.max() < 10 * np.median(steady_change) + 5  # no cut without segments


def test_segments_cut_the_appearance_but_not_the_motion_fails_for_colour_probes():
    """With cuts and a shared look pool, colour statistics still say nothing about the class."""
    videos, labels = [], []
    for label in range(len(demo_data.CLASSES)):
        for i in range(12):
            rng = np.random.default_rng([9, label, i])
            videos.append(demo_data.render_video(rng, label, size=48, num_frames=40, segment_frames=8,
                                                 look_pool=3).astype(np.float32))
            labels.append(label)
    colour = np.array([v.reshape(-1, 3).mean(0).tolist() + v.reshape(-1, 3).std(0).tolist() for v in videos])
    assert _nearest_centroid_accuracy(colour, np.array(labels), 6) <= 0.5


def test_look_pool_shares_the_whole_appearance_across_videos():
    """look_pool=1: every video gets the same background, shape, texture and colour drift."""
    a = demo_data._appearance(np.random.default_rng(1), 32, 20, look_pool=1)
    b = demo_data._appearance(np.random.default_rng(2), 32, 20, look_pool=1)
    for key in ("background", "stripes", "keys", "tint_phase"):
        np.testing.assert_array_equal(a[key], b[key])
    assert (a["radius"], a["square"], a["hold"], a["tint_speed"]) == (b["radius"], b["square"], b["hold"],
                                                                      b["tint_speed"])


def test_look_pool_shares_the_whole_appearance_across_videos_fails_without_pool():
    a = demo_data._appearance(np.random.default_rng(1), 32, 20)
    b = demo_data._appearance(np.random.default_rng(2), 32, 20)
    assert not np.array_equal(a["background"], b["background"])
    assert not np.array_equal(a["keys"], b["keys"])


def _changed_fraction(look_pool: int) -> float:
    """Fraction of pixels of frame 0 that differ between two videos of one class (different seeds)."""
    a, b = (demo_data.render_video(np.random.default_rng([seed]), 0, size=32, num_frames=4,
                                   look_pool=look_pool).astype(np.int16)[0] for seed in (5, 6))
    return float((np.abs(a - b).max(axis=-1) > 0).mean())


def test_look_pool_videos_differ_only_by_motion():
    """With one shared look, two videos differ only where their objects are."""
    assert 0 < _changed_fraction(look_pool=1) < 0.25


def test_look_pool_videos_differ_only_by_motion_fails_without_pool():
    assert _changed_fraction(look_pool=0) > 0.9


def test_make_dataset_reuses_videos_of_the_same_recipe(tmp_path):
    lists = demo_data.make_dataset(tmp_path, num_train=4, num_val=0, size=32, num_frames=8)
    first = pathlib.Path(read_list_file(str(lists["train"]))[0][1])
    before = first.stat().st_mtime_ns
    demo_data.make_dataset(tmp_path, num_train=4, num_val=0, size=32, num_frames=8)
    assert first.stat().st_mtime_ns == before


def test_make_dataset_reuses_videos_of_the_same_recipe_fails_for_another_recipe(tmp_path):
    """Videos of another look_pool (or an unstamped, half-written run) are redrawn, not mixed in."""
    lists = demo_data.make_dataset(tmp_path, num_train=4, num_val=0, size=32, num_frames=8, look_pool=0)
    first = pathlib.Path(read_list_file(str(lists["train"]))[0][1])
    old = first.read_bytes()
    demo_data.make_dataset(tmp_path, num_train=4, num_val=0, size=32, num_frames=8, look_pool=1)
    assert first.read_bytes() != old
    new = first.read_bytes()
    for damage in ("unlink", "garbage"):
        stamp = tmp_path / "recipe.json"
        stamp.unlink() if damage == "unlink" else stamp.write_text("{not json")
        first.write_bytes(b"stale")
        demo_data.make_dataset(tmp_path, num_train=4, num_val=0, size=32, num_frames=8, look_pool=1)
        assert first.read_bytes() == new, damage
