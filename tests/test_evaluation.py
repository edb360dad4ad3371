"""Linear evaluation, 30-view test input, extraction and label sources (cvrl.md §6)."""
import csv
import types

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from cvrl_fast import _eval_views as ev  # noqa: E402
from cvrl_fast import checkpoints, evaluation, models  # noqa: E402
from cvrl_fast.configs import load_config  # noqa: E402
from cvrl_fast.demo_data import encode_mp4  # noqa: E402


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
    with pytest.raises(ValueError, match="no such list file"):
        evaluation.read_labelled_sources(str(tmp_path / "missing.csv"))
    bad = tmp_path / "bad.txt"
    bad.write_text("a.mp4 1\nb.mp4\n")
    with pytest.raises(ValueError, match="line 2 has no label"):
        evaluation.read_labelled_sources(str(bad))
    with pytest.raises(ValueError, match="not a directory, list file"):
        evaluation.read_labelled_sources(str(tmp_path / "*.nothing"))


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
    assert len(rows) == 9 and all(r["label"] == r["pred"] for r in rows)
    assert (tmp_path / "metrics.json").exists()


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


def test_finetune_trains_backbone_and_head(colour_videos, tiny_backbone_ckpt, tmp_path, monkeypatch):
    """Fine-tuning updates the backbone (weights and BN statistics), not only the head, and lowers the loss.

    Accuracy is not asserted here: with 18 tiny clips, BN's batch statistics and its moving averages
    disagree too much for a held-out score to mean anything at this scale.
    """
    path, cfg = tiny_backbone_ckpt
    seen = {}
    real_finetune = evaluation.finetune

    def spy(backbone, *args, **kwargs):
        before = {w.path: w.numpy().copy() for w in backbone.weights}
        out = real_finetune(backbone, *args, **kwargs)
        seen["changed"] = {p for p, v in before.items()
                           if not np.array_equal(v, next(w for w in backbone.weights if w.path == p).numpy())}
        return out

    monkeypatch.setattr(evaluation, "finetune", spy)
    result = evaluation.main_linear_eval(
        path, str(colour_videos["train"]), str(colour_videos["val"]), str(tmp_path), config_path="finetune",
        overrides=["model.width_multiplier=0.0625", "eval.clip_frames=4", "eval.crop_size=32",
                   "eval.test_short_side=32", "eval.test_crop_size=32", "eval.num_test_clips=2",
                   "eval.batch_size=6", "eval.base_batch_size=6", "eval.learning_rate=0.01", "eval.epochs=3",
                   "eval.warmup_epochs=1", "eval.batch_clips=16"],
        finetuning=True)
    assert result["loss_history"][-1] < result["loss_history"][0]
    assert any("stem_conv" in p for p in seen["changed"])           # backbone kernels trained
    assert any("moving_mean" in p for p in seen["changed"])         # BN ran in training mode
    assert 0.0 <= result["top1"] <= 1.0 and result["num_val_videos"] == 9


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
