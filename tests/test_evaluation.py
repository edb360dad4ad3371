"""Linear evaluation, fine-tuning, 30-view test input, extraction and label sources (cvrl.md §6), and the
user workflow: real clips with broken files mixed in, relative paths from a temporary cwd, validation classes
a strict subset of the training classes."""
import csv
import json
import os
import shutil

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from cvrl_fast import _eval_views as ev  # noqa: E402
from cvrl_fast import checkpoints, evaluation, models  # noqa: E402
from cvrl_fast.configs import load_config  # noqa: E402
from cvrl_fast.demo_data import encode_mp4  # noqa: E402
from test_checkpoints import write_pretrain_workdir  # noqa: E402


def _small_eval_cfg(**kw):
    cfg = load_config("linear_eval").eval
    small = dict(clip_frames=4, frame_stride=2, crop_size=32, test_short_side=32, test_crop_size=32,
                 num_test_clips=2, batch_size=8, base_batch_size=8, learning_rate=1.0, epochs=30.0,
                 warmup_epochs=1.0, train_views=2, batch_clips=16, num_threads=2)
    small.update(kw)
    for k, v in small.items():
        cfg.override(k, v)
    return cfg


@pytest.fixture(scope="module")
def colour_videos(tmp_path_factory):
    """3 classes told apart by the dominant colour channel; brightness, noise and size vary per video."""
    root = tmp_path_factory.mktemp("colour")
    rng = np.random.default_rng(0)
    rows = {"train": [], "val": []}
    for split, per_class in (("train", 6), ("val", 3)):
        for label in range(3):
            for k in range(per_class):
                h, w = (36, 48) if k % 2 else (48, 40)
                frames = rng.integers(0, 60, (30, h, w, 3)).astype(np.uint8)
                frames[..., label] = rng.integers(150, 255)
                path = root / f"{split}_{label}_{k}.mp4"
                encode_mp4(frames, path)
                rows[split].append((path.name, label))
    lists = {}
    for split, r in rows.items():
        lists[split] = root / f"{split}.csv"
        with open(lists[split], "w", newline="") as f:
            csv.writer(f).writerows([("path", "label"), *r])
    return lists


@pytest.fixture(scope="module")
def tiny_backbone_ckpt(tmp_path_factory):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    cfg = models.BackboneConfig(width_multiplier=0.0625, bn_synchronized=False)
    backbone = models.build_backbone(cfg)
    path = checkpoints.save_official_backbone(backbone, str(tmp_path_factory.mktemp("ckpt") / "backbone"), config=cfg)
    return path, cfg


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny pretrain workdir (R3D-18 at width 1/16, the layout the trainer writes)."""
    root, _ = write_pretrain_workdir(tmp_path_factory.mktemp("tiny_run") / "run")
    return root


TINY_EVAL = ["eval.clip_frames=4", "eval.crop_size=32", "eval.test_short_side=32", "eval.test_crop_size=32",
             "eval.num_test_clips=2", "eval.batch_clips=16"]


def test_read_labelled_sources_csv(colour_videos):
    paths, labels, names = evaluation.read_labelled_sources(str(colour_videos["val"]))
    assert len(paths) == 9 and sorted(set(labels)) == [0, 1, 2] and names == []
    assert all(p.startswith(str(colour_videos["val"].parent)) for p in paths)  # relative to the list file


def test_read_labelled_sources_class_dirs(tmp_path):
    for name in ("walk", "run"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.mp4").write_bytes(b"")
    paths, labels, names = evaluation.read_labelled_sources(str(tmp_path))
    assert names == ["run", "walk"] and labels == [0, 1]


def test_read_labelled_sources_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such list file"):
        evaluation.read_labelled_sources(str(tmp_path / "missing.csv"))
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"")
    bad = tmp_path / "bad.txt"
    bad.write_text("a.mp4 1\nb.mp4\n")
    with pytest.raises(ValueError, match="bad.txt line 2 has no label"):
        evaluation.read_labelled_sources(str(bad))
    with pytest.raises(FileNotFoundError, match="the pattern matches no file"):
        evaluation.read_labelled_sources(str(tmp_path / "*.nothing"))
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        evaluation.read_labelled_sources(str(tmp_path / "nothing_here"))
    # Every named file is checked before any work: the first missing one is named with its line.
    (tmp_path / "holes.csv").write_text("path,label\na.mp4,0\nclips/gone.mp4,1\nb.mp4,1\nalso_gone.mp4,0\n")
    with pytest.raises(FileNotFoundError, match=r"holes.csv line 3: no such file '.*clips/gone.mp4' \(and 1 more "
                                                r"missing, e.g. .*holes.csv line 5\); relative paths are relative"):
        evaluation.read_labelled_sources(str(tmp_path / "holes.csv"))
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "walk").mkdir()
    (tmp_path / "mixed" / "walk" / "a.mp4").write_bytes(b"")
    (tmp_path / "mixed" / "loose.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="holds both videos .*loose.mp4.* and class sub-directories"):
        evaluation.read_labelled_sources(str(tmp_path / "mixed"))


def test_test_views_take_the_spec_clips_and_crops(colour_videos):
    cfg = _small_eval_cfg(target_fps=0.0)  # native frames: index i is decoded frame i
    path = str(colour_videos["val"].parent / "val_0_1.mp4")   # 36x48 (h < w): crops along W
    video = evaluation.IndexedVideo(path, target_fps=None)
    out = evaluation.test_views(video, cfg)
    assert out.shape == (2 * 3, 4, 32, 32, 3)
    full = video.reader.get_frames(np.arange(video.num_frames))
    h, w = ev.short_side_size(36, 48, 32)
    resized = evaluation._resize_bilinear(full, h, w, truncate=False)
    starts = ev.test_clip_starts(video.num_frames, 2, 4, 2)
    for c, start in enumerate(starts):
        idx = ev.clip_indices(int(start), video.num_frames, 4, 2)
        for k, (y, x) in enumerate(ev.three_crop_offsets(h, w, 32)):
            np.testing.assert_array_equal(out[3 * c + k], resized[idx, y:y + 32, x:x + 32])


def test_train_clip_is_deterministic_and_sized(colour_videos):
    cfg = _small_eval_cfg()
    video = evaluation.IndexedVideo(str(colour_videos["val"].parent / "val_2_0.mp4"))
    a = evaluation.train_clip(video, cfg, seed=3, epoch=1, index=5)
    b = evaluation.train_clip(video, cfg, seed=3, epoch=1, index=5)
    c = evaluation.train_clip(video, cfg, seed=3, epoch=2, index=5)
    assert a.shape == (4, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_train_linear_head_separable_and_chance():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    labels = np.repeat(np.arange(4), 20)
    feats = centres[labels] + 0.05 * rng.normal(size=(80, 16))
    cfg = _small_eval_cfg(epochs=40.0, batch_size=16, base_batch_size=16, learning_rate=2.0)
    kernel, bias, history = evaluation.train_linear_head(feats[None], labels, 4, cfg)
    probs = evaluation.view_probabilities(feats[:, None], kernel, bias)
    assert evaluation.topk_accuracy(probs, labels, 1) == 1.0
    assert history[-1] < history[0]
    # Hand-made check: identical features with two different labels can be right only half the time.
    feats2 = np.concatenate([feats[:40], feats[:40]])
    labels2 = np.concatenate([np.zeros(40, int), np.ones(40, int)])
    kernel, bias, _ = evaluation.train_linear_head(feats2[None], labels2, 2, cfg)
    acc = evaluation.topk_accuracy(evaluation.view_probabilities(feats2[:, None], kernel, bias), labels2, 1)
    assert acc == pytest.approx(0.5)


def test_train_linear_head_fails():
    cfg = _small_eval_cfg()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        evaluation.train_linear_head(np.ones((1, 4, 3)), np.array([0, 1, 2, 1]), 2, cfg)


def test_linear_eval_from_saved_checkpoint(colour_videos, tiny_backbone_ckpt, tmp_path):
    path, _ = tiny_backbone_ckpt
    result = evaluation.main_linear_eval(
        path, str(colour_videos["train"]), str(colour_videos["val"]), str(tmp_path),
        overrides=["model.width_multiplier=0.0625", "eval.clip_frames=4", "eval.crop_size=32",
                   "eval.test_short_side=32", "eval.test_crop_size=32", "eval.num_test_clips=2",
                   "eval.batch_size=6", "eval.base_batch_size=6", "eval.learning_rate=1.0", "eval.epochs=40",
                   "eval.warmup_epochs=2", "eval.train_views=2", "eval.batch_clips=16"])
    # Colour is linearly separable even through a random backbone: the probe must get every video right.
    assert result["top1"] == 1.0 and result["num_val_videos"] == 9
    rows = list(csv.DictReader(open(tmp_path / "predictions.csv")))
    assert len(rows) == 9 and all(r["label"] == r["prediction"] for r in rows)
    assert list(rows[0]) == ["path", "label", "prediction"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["top1"] == 1.0 and "top5" not in metrics  # 3 classes: top-5 is not a measurement


def test_extract_from_saved_checkpoint(colour_videos, tiny_backbone_ckpt, tmp_path):
    path, cfg = tiny_backbone_ckpt
    out = tmp_path / "feats.npz"
    overrides = ["model.width_multiplier=0.0625", "eval.clip_frames=4", "eval.test_short_side=32",
                 "eval.test_crop_size=32", "eval.num_test_clips=2"]
    feats = evaluation.main_extract(path, str(colour_videos["val"]), str(out), overrides=overrides)
    data = np.load(out)
    assert data["features"].shape == (9, 128) and len(data["paths"]) == 9
    # Oracle: the same backbone applied by hand to the 6 views of the first video, pooled and averaged.
    backbone = checkpoints.load_official_backbone(path, config=cfg)
    ecfg = load_config("linear_eval", overrides).eval
    clips = evaluation.test_views(evaluation.IndexedVideo(str(data["paths"][0])), ecfg)
    expected = tf.reduce_mean(backbone(clips.astype(np.float32) / 255.0, training=False), axis=[1, 2, 3])
    np.testing.assert_allclose(feats[0], expected.numpy().mean(axis=0), rtol=1e-4, atol=1e-5)


def test_linear_eval_unlabelled_fails(colour_videos, tiny_backbone_ckpt, tmp_path):
    path, _ = tiny_backbone_ckpt
    with pytest.raises(ValueError, match="every video needs a label"):
        evaluation.main_linear_eval(path, str(colour_videos["train"].parent / "*.mp4"), str(colour_videos["val"]),
                                    str(tmp_path))


def test_finetune_trains_backbone_and_head(colour_videos, tiny_run, tmp_path, monkeypatch):
    """Fine-tuning updates the backbone (weights and BN statistics), not only the head, and lowers the loss.

    Accuracy is not asserted here: with 18 tiny clips, BN's batch statistics and its moving averages
    disagree too much for a held-out score to mean anything at this scale.
    """
    seen = {}
    real_finetune = evaluation.finetune

    def spy(backbone, *args, **kwargs):
        before = {w.path: w.numpy().copy() for w in backbone.weights}
        out = real_finetune(backbone, *args, **kwargs)
        seen["changed"] = {p for p, v in before.items()
                           if not np.array_equal(v, next(w for w in backbone.weights if w.path == p).numpy())}
        return out

    monkeypatch.setattr(evaluation, "finetune", spy)
    result = evaluation.main_finetune(
        tiny_run, str(colour_videos["train"]), str(colour_videos["val"]), str(tmp_path),
        overrides=TINY_EVAL + ["eval.batch_size=6", "eval.base_batch_size=6", "eval.learning_rate=0.01",
                               "eval.epochs=3", "eval.warmup_epochs=1"])
    assert result["loss_history"][-1] < result["loss_history"][0] and result["steps"] == 9
    assert any("stem_conv" in p for p in seen["changed"])           # backbone kernels trained
    assert any("moving_mean" in p for p in seen["changed"])         # BN ran in training mode
    assert 0.0 <= result["top1"] <= 1.0 and result["num_val_videos"] == 9
    head = np.load(tmp_path / "classifier.npz")
    assert head["kernel"].shape == (32, 3) and list(head["class_names"]) == [] and int(head["num_classes"]) == 3
    rows = list(csv.DictReader(open(tmp_path / "predictions.csv")))
    assert len(rows) == 9 and {r["label"] for r in rows} == {"0", "1", "2"}  # integer labels stay integers


def test_linear_eval_reads_reference_tfrecords(colour_videos, tiny_backbone_ckpt, tmp_path):
    from cvrl_fast import tfrecord

    path, _ = tiny_backbone_ckpt
    records = {}
    for split in ("train", "val"):
        paths, labels, _ = evaluation.read_labelled_sources(str(colour_videos[split]))
        records[split] = str(tmp_path / f"{split}.tfrecord")
        tfrecord.write_tfrecord(records[split], paths, labels=[[lbl] for lbl in labels])
    items, labels, _ = evaluation.read_labelled_sources(records["val"])
    assert len(items) == 9 and items[0].endswith(".tfrecord#0") and sorted(set(labels)) == [0, 1, 2]
    record = evaluation.open_source(items[0])
    assert isinstance(record, evaluation.IndexedRecord) and record.clip([0, 0]).shape[0] == 2
    result = evaluation.main_linear_eval(
        path, records["train"], records["val"], str(tmp_path / "work"),
        overrides=["model.width_multiplier=0.0625", "eval.clip_frames=4", "eval.crop_size=32",
                   "eval.test_short_side=32", "eval.test_crop_size=32", "eval.num_test_clips=2",
                   "eval.batch_size=6", "eval.base_batch_size=6", "eval.learning_rate=1.0", "eval.epochs=40",
                   "eval.warmup_epochs=2", "eval.train_views=2", "eval.batch_clips=16"])
    assert result["top1"] == 1.0 and result["num_val_videos"] == 9


# ------------------------------------------------------------------------------------------------
# One class numbering per run (train labels), applied to validation
# ------------------------------------------------------------------------------------------------
def _touch_tree(root, tree):
    """tree: {"train/bikes": ["a.mp4"], ...} -> empty files (the label readers never decode)."""
    for folder, names in tree.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for n in names:
            (root / folder / n).write_bytes(b"")


def test_train_val_share_one_class_mapping(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _touch_tree(tmp_path, {"train/bikes": ["b.mp4"], "train/cartoon": ["c.mp4"], "train/city": ["x.mp4", "y.mp4"],
                           "train/film": ["f.mp4"], "val/city": ["v1.mp4"], "val/film": ["v2.mp4"]})
    tr, va, n = evaluation.read_train_val("train", "val")
    assert tr.class_names == va.class_names == ["bikes", "cartoon", "city", "film"] and n == 4
    assert va.labels == [2, 3] and va.paths == [os.path.join("val", "city", "v1.mp4"), os.path.join("val", "film", "v2.mp4")]
    # Class names in lists: the same numbering, whatever the list's own class set.
    (tmp_path / "train.csv").write_text("path,label\ntrain/bikes/b.mp4,bikes\ntrain/film/f.mp4,film\n"
                                        "train/city/x.mp4,city\n")
    (tmp_path / "val.txt").write_text("train/film/f.mp4 film\n")
    tr, va, n = evaluation.read_train_val("train.csv", "val.txt")
    assert tr.labels == [0, 2, 1] and va.labels == [2] and n == 3
    # Integers are used as given; num_classes is 1 + the largest, or the config's value.
    (tmp_path / "train_i.csv").write_text("train/bikes/b.mp4,0\ntrain/film/f.mp4,3\n")
    (tmp_path / "val_i.csv").write_text("train/film/f.mp4,3\n")
    tr, va, n = evaluation.read_train_val("train_i.csv", "val_i.csv")
    assert (tr.labels, va.labels, tr.class_names, n) == ([0, 3], [3], [], 4)
    assert evaluation.read_train_val("train_i.csv", "val_i.csv", num_classes=10)[2] == 10


def test_train_val_share_one_class_mapping_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _touch_tree(tmp_path, {"train/city": ["x.mp4"], "train/film": ["f.mp4"], "val/city": ["v.mp4"],
                           "val/zebra": ["z.mp4"]})
    with pytest.raises(ValueError, match=r"val: class 'zebra' \(val/zebra/z.mp4\) not among the training classes "
                                         r"\(city, film\)"):
        evaluation.read_train_val("train", "val")
    (tmp_path / "train_i.csv").write_text("train/city/x.mp4,0\ntrain/film/f.mp4,1\n")
    (tmp_path / "val_i.csv").write_text("val/city/v.mp4,1\nval/zebra/z.mp4,7\n")
    with pytest.raises(ValueError, match=r"val_i.csv: class 7 \(val_i.csv line 2\) not among the training labels "
                                         r"of train_i.csv \(0-1\)"):
        evaluation.read_train_val("train_i.csv", "val_i.csv")
    with pytest.raises(ValueError, match="labels are class names .* but the training labels of train_i.csv are integers"):
        evaluation.read_train_val("train_i.csv", "val")
    with pytest.raises(ValueError, match="eval.num_classes=5 but the training labels of train name 2 classes"):
        evaluation.read_train_val("train", "train", num_classes=5)


def test_linear_eval_val_classes_a_subset_of_train(colour_videos, tiny_run, tmp_path, monkeypatch, capsys):
    """Class directories with validation holding 2 of the 3 training classes. Numbered per split (the old bug),
    validation 'green' and 'red' would be 0 and 1 instead of 1 and 2 and every prediction would count as wrong;
    one mapping makes the colour probe exact. The backbone is a tiny pretrain workdir, named relatively, with
    no --config.model overrides: depth and width come from the run."""
    monkeypatch.chdir(tmp_path)
    names = {0: "red", 1: "green", 2: "blue"}
    for split, src in colour_videos.items():
        for path, label in list(csv.reader(open(src)))[1:]:
            if split == "val" and names[int(label)] == "blue":
                continue
            (tmp_path / split / names[int(label)]).mkdir(parents=True, exist_ok=True)
            shutil.copy(src.parent / path, tmp_path / split / names[int(label)] / path)
    shutil.copytree(tiny_run, tmp_path / "run")
    result = evaluation.main_linear_eval(
        "run", "train", "val", "out", overrides=TINY_EVAL + [
            "eval.batch_size=6", "eval.base_batch_size=6", "eval.learning_rate=1.0", "eval.epochs=40",
            "eval.warmup_epochs=2", "eval.train_views=2"])
    assert result["top1"] == 1.0 and result["num_val_videos"] == 6
    rows = list(csv.DictReader(open("out/predictions.csv")))
    assert {r["label"] for r in rows} == {"green", "red"}
    assert all(r["label"] == r["prediction"] == r["path"].split(os.sep)[1] for r in rows)
    metrics = json.loads(open("out/metrics.json").read())
    assert metrics["class_names"] == ["blue", "green", "red"] and "top5" not in metrics
    assert metrics["backbone"]["depth"] == 18 and metrics["backbone"]["width_multiplier"] == 0.0625
    out = capsys.readouterr().out
    assert "linear-eval: top-1 100.0% top-5 n/a (3 classes) on 6 validation videos" in out
    assert "\r" not in out  # plain progress lines when not on a terminal


def test_linear_eval_val_classes_a_subset_of_train_fails(tiny_run, tmp_path, monkeypatch):
    """An unseen validation class, a contradicting --config.model.depth, epochs <= 0: errors before any work."""
    monkeypatch.chdir(tmp_path)
    _touch_tree(tmp_path, {"train/red": ["a.mp4"], "train/green": ["b.mp4"], "val/red": ["c.mp4"],
                           "val/purple": ["d.mp4"]})
    with pytest.raises(ValueError, match="class 'purple' .* not among the training classes"):
        evaluation.main_linear_eval(str(tiny_run), "train", "val", "out")
    assert not os.path.exists("out")  # nothing written
    shutil.rmtree("val/purple")
    with pytest.raises(ValueError, match=r"config model.depth=50 contradicts the backbone .*model.depth=18"):
        evaluation.main_linear_eval(str(tiny_run), "train", "val", "out", overrides=["model.depth=50"])
    for epochs in ("0", "-1"):
        with pytest.raises(ValueError, match=f"eval.epochs={epochs}: must be > 0"):
            evaluation.main_linear_eval(str(tiny_run), "train", "val", "out", overrides=[f"eval.epochs={epochs}"])
    with pytest.raises(ValueError, match="unknown config key 'eval.epoch'"):
        evaluation.main_linear_eval(str(tiny_run), "train", "val", "out", overrides=["eval.epoch=1"])


# ------------------------------------------------------------------------------------------------
# Schedules of short runs: epochs = 1, fractional epochs
# ------------------------------------------------------------------------------------------------
def test_linear_head_short_runs():
    """0.5 epochs of 2 steps is exactly one update at the peak rate (warmup capped to 0 steps), checked against
    one SGD step worked out in NumPy from the same initial head."""
    import keras

    rng = np.random.default_rng(1)
    feats = rng.normal(size=(1, 16, 8)).astype(np.float32)
    labels = np.arange(16) % 3
    cfg = _small_eval_cfg(epochs=0.5, batch_size=8, base_batch_size=8, learning_rate=0.5, warmup_epochs=5.0)
    kernel, bias, history = evaluation.train_linear_head(feats, labels, 3, cfg)
    keras.utils.set_random_seed(cfg.seed)  # the head's initial values, drawn as train_linear_head draws them
    dense = keras.layers.Dense(3)
    dense.build((None, 8))
    k0, b0 = dense.kernel.numpy(), dense.bias.numpy()
    idx = np.random.default_rng(cfg.seed).permutation(16)[:8]
    x = feats[0] / np.linalg.norm(feats[0], axis=-1, keepdims=True)
    logits = x[idx] @ k0 + b0
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    g = (p - np.eye(3)[labels[idx]]) / 8
    np.testing.assert_allclose(kernel, k0 - 0.5 * x[idx].T @ g, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bias, b0 - 0.5 * g.sum(0), rtol=1e-5, atol=1e-6)
    assert len(history) == 1
    # One epoch with the default 5-epoch warmup: it used to fail with "warmup_steps=5: must be in [0, ...]".
    kernel1, _, history = evaluation.train_linear_head(feats, labels, 3, _small_eval_cfg(epochs=1.0, batch_size=8,
                                                                                         warmup_epochs=5.0))
    assert len(history) == 1 and not np.allclose(kernel1, k0)


def test_linear_head_short_runs_fails():
    feats, labels = np.ones((1, 4, 3)), np.array([0, 1, 0, 1])
    for epochs in (0.0, -2.0):
        with pytest.raises(ValueError, match=r"eval.epochs=-?\d+: must be > 0"):
            evaluation.train_linear_head(feats, labels, 2, _small_eval_cfg(epochs=epochs))
    with pytest.raises(ValueError, match="eval.warmup_epochs=-1: must be >= 0"):
        evaluation.train_linear_head(feats, labels, 2, _small_eval_cfg(warmup_epochs=-1.0))


def test_top5_needs_more_than_5_classes():
    probs = np.tile(np.arange(6, 0, -1, dtype=float), (4, 1))  # class 0 ranked first, class 5 last
    acc = evaluation._accuracies(probs / probs.sum(1, keepdims=True), [0, 4, 5, 5], 6)
    assert acc == {"top1": 0.25, "top5": 0.5}


def test_top5_needs_more_than_5_classes_fails():
    """With 5 classes or fewer every label is in the top 5: not reported (NaN here, left out of metrics.json)."""
    for c in (2, 5):
        acc = evaluation._accuracies(np.full((3, c), 1.0 / c), [0, 1, 1], c)
        assert np.isnan(acc["top5"])


# ------------------------------------------------------------------------------------------------
# The user workflow: real clips, broken files, relative paths, skip and report
# ------------------------------------------------------------------------------------------------
def _truncated_copy(src, dst, keep=0.5):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[:int(len(data) * keep)])


@pytest.fixture
def workflow_dir(clip_dir, tiny_run, tmp_path, monkeypatch):
    """cwd = a fresh directory holding `run/` (a tiny pretrain workdir) and class directories of real clips:
    videos/train/{bikes,cartoon,city,film} with a text file named .mp4 and a truncated mp4 among them, and
    videos/val/{city,film} (a strict subset of the training classes) with a truncated mp4."""
    monkeypatch.chdir(tmp_path)
    layout = {"train/bikes": ["bikes.mp4"], "train/cartoon": ["bigbuckbunny.mp4"],
              "train/city": ["cityCC0.mpg", "carphone_pristine.mp4"], "train/film": ["film1906.mp4"],
              "val/city": ["cityCC0.mpg"], "val/film": ["film1906.mp4"]}
    for folder, clips in layout.items():
        os.makedirs(os.path.join("videos", folder))
        for c in clips:
            os.symlink(clip_dir / c, os.path.join("videos", folder, c))
    open("videos/train/city/notes.mp4", "w").write("not a video, only a name\n")
    _truncated_copy(clip_dir / "bikes.mp4", "videos/train/film/cut.mp4")
    _truncated_copy(clip_dir / "carphone_pristine.mp4", "videos/val/film/cut.mp4")
    shutil.copytree(tiny_run, "run")
    return tmp_path


def test_user_workflow_skips_broken_videos(workflow_dir, capfd):
    """linear-eval, finetune (one epoch, the default 5-epoch warmup) and extract, run as a user does: the
    broken files are skipped and reported once each, every output is complete, predictions use class names."""
    result = evaluation.main_linear_eval("run", "videos/train", "videos/val", "le",
                                         overrides=TINY_EVAL + ["eval.epochs=1", "eval.batch_size=4"])
    out, err = capfd.readouterr()
    train_line = next(line for line in out.splitlines() if "skipped 2 of" in line)
    assert train_line.startswith("train (videos/train): skipped 2 of 7 videos: videos/train/city/notes.mp4: "
                                 "cannot open video")
    assert out.count("videos/train/film/cut.mp4: cannot open video") == 1 and out.count("skipped 2 of 7") == 1
    assert "val (videos/val): skipped 1 of 3 videos: videos/val/film/cut.mp4: cannot open video" in out
    assert "\r" not in out and "Instructions for updating" not in err and "deprecated" not in err
    assert result["num_train_videos"] == 5 and result["num_val_videos"] == 2
    assert [s["path"] for s in result["skipped"]["train"]] == ["videos/train/city/notes.mp4", "videos/train/film/cut.mp4"]
    rows = list(csv.DictReader(open("le/predictions.csv")))
    assert [(r["path"], r["label"]) for r in rows] == [("videos/val/city/cityCC0.mpg", "city"),
                                                     ("videos/val/film/film1906.mp4", "film")]
    assert {r["prediction"] for r in rows} <= {"bikes", "cartoon", "city", "film"}
    metrics = json.loads(open("le/metrics.json").read())
    assert metrics["top1"] == np.mean([r["label"] == r["prediction"] for r in rows]) and "top5" not in metrics
    assert len(metrics["skipped"]["train"]) == 2 and len(metrics["skipped"]["val"]) == 1

    ft = evaluation.main_finetune("run", "videos/train", "videos/val", "ft",
                                  overrides=TINY_EVAL + ["eval.epochs=1", "eval.batch_size=4"])
    out = capfd.readouterr().out
    assert ft["steps"] == 2 and out.count("skipped 2 of 7 videos") == 1  # 5 clips at batch 4
    assert "finetune: top-1" in out and "top-5 n/a (4 classes)" in out
    head = np.load("ft/classifier.npz")
    assert list(head["class_names"]) == ["bikes", "cartoon", "city", "film"] and head["kernel"].shape == (32, 4)
    assert len(list(csv.DictReader(open("ft/predictions.csv")))) == 2
    # The fine-tuned backbone is itself a --backbone, and holds the fine-tuned (not the pretrained) weights.
    tuned, resolved = checkpoints.load_backbone("ft")
    assert resolved.prefix == os.path.join("ft", "backbone", "backbone-2") and resolved.config.depth == 18
    pretrained, _ = checkpoints.load_backbone("run")
    assert not np.array_equal(tuned.get_layer("stem_conv").kernel.numpy(), pretrained.get_layer("stem_conv").kernel.numpy())

    feats = evaluation.main_extract("run", "videos/train", "feats", overrides=TINY_EVAL)
    out = capfd.readouterr().out
    assert "extract (videos/train): skipped 2 of 7 videos" in out and "extract: 5 videos x 32 features -> feats.npz" in out
    data = np.load("feats.npz")
    assert data["features"].shape == (5, 32) and np.isfinite(data["features"]).all()
    assert list(data["skipped_paths"]) == ["videos/train/city/notes.mp4", "videos/train/film/cut.mp4"]
    assert list(data["class_names"]) == ["bikes", "cartoon", "city", "film"] and list(data["labels"]) == [0, 1, 2, 2, 3]
    # Oracle for one video: the backbone applied by hand to its test views, pooled and averaged.
    ecfg = load_config("linear_eval", TINY_EVAL).eval
    clips = evaluation.test_views(evaluation.IndexedVideo(str(data["paths"][1])), ecfg).astype(np.float32) / 255.0
    expected = tf.reduce_mean(pretrained(clips, training=False), axis=[1, 2, 3]).numpy().mean(axis=0)
    np.testing.assert_allclose(feats[1], expected, rtol=1e-4, atol=1e-5)


def test_user_workflow_skips_broken_videos_fails(workflow_dir, monkeypatch):
    """Nothing decodable: one error naming the count once, and no output. A missing file in a list: an error
    naming the line before the backbone is even read. Ctrl-C while writing: no partial file."""
    os.makedirs("broken/film")
    shutil.move("videos/val/film/cut.mp4", "broken/film/cut.mp4")
    shutil.move("videos/train/city/notes.mp4", "broken/film/notes.mp4")
    with pytest.raises(ValueError) as info:
        evaluation.main_extract("run", "broken", "none.npz", overrides=TINY_EVAL)
    message = str(info.value)
    assert message.startswith("extract (broken): none of the 2 videos could be decoded (broken/film/cut.mp4: ")
    assert message.count("2 videos") == 1 and not os.path.exists("none.npz")
    with pytest.raises(ValueError, match=r"val \(broken\): none of the 2 videos could be decoded"):
        evaluation.main_linear_eval("run", "videos/train", "broken", "le", overrides=TINY_EVAL + ["eval.epochs=1"])
    assert not os.path.exists("le/metrics.json") and not os.path.exists("le/predictions.csv")
    open("list.csv", "w").write("path,label\nvideos/train/bikes/bikes.mp4,bikes\nvideos/train/gone.mp4,film\n")
    with pytest.raises(FileNotFoundError, match=r"list.csv line 3: no such file '.*videos/train/gone.mp4'"):
        evaluation.main_extract("no_such_backbone", "list.csv", "x.npz")

    def interrupted_savez(f, **arrays):
        f.write(b"PK partial archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted_savez)
    with pytest.raises(KeyboardInterrupt):
        evaluation.main_extract("run", "videos/val/city", "city.npz", overrides=TINY_EVAL)
    assert not [f for f in os.listdir(".") if "city.npz" in f]  # neither the output nor its temporary file


def test_atomic_output(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with evaluation.atomic_output(str(target)) as f:
        f.write("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["metrics.json"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_atomic_output_fails(tmp_path):
    """An exception (here Ctrl-C) inside the block: the old file stays whole and no temporary file is left."""
    target = tmp_path / "predictions.csv"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with evaluation.atomic_output(str(target)) as f:
            f.write("half a row")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["predictions.csv"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
