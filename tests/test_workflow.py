"""A user's own run, end to end, through the `cvrl-fast` CLI as a user types it: from a fresh working
directory with relative paths, on real clips with broken files mixed in, pretrain, then linear-eval,
extract and finetune on its output, with validation classes a strict subset of the training classes."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

EVAL = ["--config.eval.clip_frames=4", "--config.eval.crop_size=32", "--config.eval.test_short_side=32",
        "--config.eval.test_crop_size=32", "--config.eval.num_test_clips=2", "--config.eval.batch_clips=16",
        "--config.eval.epochs=1", "--config.eval.batch_size=4"]
NOISE = ("Traceback", "InitializeLog", "cudart_stub", "cuInit", "Instructions for updating", "deprecated")


def cvrl_fast(cwd, *args, expect_rc=0):
    proc = subprocess.run([sys.executable, "-m", "cvrl_fast.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == expect_rc, f"rc {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    for noise in NOISE:
        assert noise not in proc.stderr, proc.stderr[-3000:]
    assert "\r" not in proc.stdout and "\x1b" not in proc.stdout
    return proc.stdout, proc.stderr


@pytest.fixture
def user_dir(clip_dir, tmp_path):
    """videos/train/{bikes,cartoon,city,film} (real clips, a text file named .mp4 and a truncated mp4 among
    them) and videos/val/{city,film}."""
    layout = {"train/bikes": ["bikes.mp4"], "train/cartoon": ["bigbuckbunny.mp4"],
              "train/city": ["cityCC0.mpg", "carphone_pristine.mp4"], "train/film": ["film1906.mp4"],
              "val/city": ["cityCC0.mpg"], "val/film": ["film1906.mp4"]}
    for folder, clips in layout.items():
        (tmp_path / "videos" / folder).mkdir(parents=True)
        for c in clips:
            os.symlink(clip_dir / c, tmp_path / "videos" / folder / c)
    (tmp_path / "videos/train/city/notes.mp4").write_text("not a video, only a name\n")
    data = (clip_dir / "bikes.mp4").read_bytes()
    (tmp_path / "videos/train/film/cut.mp4").write_bytes(data[:len(data) // 2])
    return tmp_path


def test_pretrain_then_evaluate_extract_finetune(user_dir):
    out, err = cvrl_fast(user_dir, "pretrain", "--config", "tiny_cpu", "--workdir", "run",
                         "--config.data.sources=videos/train", "--config.model.depth=18",
                         "--config.train.total_steps=3", "--config.checkpoint.every_steps=2")
    # Trained on the files (not synthetic data): 7 found, the two broken ones skipped and named.
    assert "  data: 7 videos from videos/train" in out
    assert "videos/train/city/notes.mp4" in err and "videos/train/film/cut.mp4" in err
    assert out.splitlines()[-1].startswith("pretrain: done: step 3/3")
    assert out.splitlines()[-1].endswith("skipped 2 of 7 videos that do not decode (listed in summary.json)")
    summary = json.load(open(user_dir / "run" / "summary.json"))
    assert sorted(s["source"] for s in summary["skipped"]) == ["videos/train/city/notes.mp4",
                                                              "videos/train/film/cut.mp4"]
    assert sorted(f for f in os.listdir(user_dir / "run" / "backbone") if f.endswith(".index")) == [
        "backbone-2.index", "backbone-3.index"]

    out, _ = cvrl_fast(user_dir, "linear-eval", "--backbone", "run", "--train", "videos/train", "--val", "videos/val",
                       "--workdir", "le", *EVAL)
    assert "linear-eval: backbone R3D-18 width 0.0625 from run/backbone/backbone-3;" in out  # read from the run
    assert "skipped 2 of 7 videos" in out and "top-5 n/a (4 classes)" in out
    rows = list(csv.DictReader(open(user_dir / "le" / "predictions.csv")))
    # One class mapping: city and film keep their training names (not renumbered within val).
    assert [(r["path"], r["label"]) for r in rows] == [("videos/val/city/cityCC0.mpg", "city"),
                                                     ("videos/val/film/film1906.mp4", "film")]
    metrics = json.load(open(user_dir / "le" / "metrics.json"))
    assert metrics["class_names"] == ["bikes", "cartoon", "city", "film"]
    assert metrics["backbone"]["depth"] == 18 and metrics["backbone"]["width_multiplier"] == 0.0625

    out, _ = cvrl_fast(user_dir, "extract", "--backbone", "run/checkpoints/ckpt-2", "--videos", "videos/train",
                       "--out", "feats.npz", *EVAL[:6])
    feats = np.load(user_dir / "feats.npz")
    assert feats["features"].shape == (5, 32) and np.isfinite(feats["features"]).all()
    assert list(feats["skipped_paths"]) == ["videos/train/city/notes.mp4", "videos/train/film/cut.mp4"]

    out, _ = cvrl_fast(user_dir, "finetune", "--backbone", "run/backbone", "--train", "videos/train",
                       "--val", "videos/val", "--workdir", "ft", *EVAL)
    assert "finetune: top-1" in out
    assert len(list(csv.DictReader(open(user_dir / "ft" / "predictions.csv")))) == 2
    assert (user_dir / "ft" / "classifier.npz").exists()
    assert any(f.endswith(".index") for f in os.listdir(user_dir / "ft" / "backbone"))


def test_pretrain_then_evaluate_extract_finetune_fails(user_dir):
    """The mistakes a user makes get one line each, exit 2, and nothing half-written."""
    (user_dir / "videos" / "val" / "zebra").mkdir()
    os.symlink(user_dir / "videos" / "val" / "city" / "cityCC0.mpg", user_dir / "videos" / "val" / "zebra" / "z.mpg")
    _, err = cvrl_fast(user_dir, "linear-eval", "--backbone", "nowhere", "--train", "videos/train",
                       "--val", "videos/val", "--workdir", "le", *EVAL, expect_rc=2)
    assert len(err.strip().splitlines()) == 1 and "class 'zebra'" in err, err
    _, err = cvrl_fast(user_dir, "pretrain", "--config", "tiny_cpu", "--workdir", "run",
                       "--config.data.sources=videos/val/city", expect_rc=2)
    assert "train.global_batch_size=4 is larger than the 1 videos" in err and len(err.strip().splitlines()) == 1
    _, err = cvrl_fast(user_dir, "pretrain", "--config", "tiny_cpu", "--workdir", "run",
                       "--config.data.sourcez=videos", expect_rc=2)
    assert "unknown config key 'data.sourcez'" in err and len(err.strip().splitlines()) == 1
    assert not (user_dir / "run").exists() and not (user_dir / "le").exists()
    # A folder where nothing decodes: the count once, in one line, exit 1 (the run could not go on).
    (user_dir / "broken").mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        os.symlink(user_dir / "videos/train/city/notes.mp4", user_dir / "broken" / name)
    _, err = cvrl_fast(user_dir, "pretrain", "--config", "tiny_cpu", "--workdir", "run2",
                       "--config.data.sources=broken", expect_rc=1)
    errors = [line for line in err.splitlines() if line.startswith("cvrl-fast pretrain: error:")]
    assert len(errors) == 1 and "every one of the 4 sources failed to decode" in errors[0], err
    assert err.count("4 sources") == 1 and not (user_dir / "run2" / "checkpoints").exists()


def _interrupt_trials(clip_dir, workdir, trials, seed):
    """Train on real clips in one workdir; each trial resumes the last one, is interrupted with Ctrl-C at a
    random moment after a step, and must exit 0 without a traceback having saved where it stopped."""
    import random
    import signal
    import time

    rng = random.Random(seed)
    args = [sys.executable, "-m", "cvrl_fast.cli", "pretrain", "--config", "tiny_cpu", "--workdir", str(workdir),
            f"--config.data.sources={clip_dir}", "--config.model.depth=18", "--config.train.total_steps=1000",
            "--config.checkpoint.every_steps=1000"]
    last = 0
    for trial in range(trials):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        target = last + 1 + rng.randrange(2)
        for line in proc.stdout:
            if line.startswith(f"pretrain: {target}/"):
                break
        time.sleep(rng.uniform(0.0, 1.5))  # into the next step, the input wait or the loader's work
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"trial {trial}: rc {proc.returncode}\n{err[-3000:]}"
        for bad in ("Traceback", "free()", "terminate called", "Segmentation", "Aborted", "AddressSanitizer"):
            assert bad not in err, f"trial {trial}: {err[-3000:]}"
        summary = json.load(open(workdir / "summary.json"))
        assert summary["signal"] == "SIGINT" and summary["start_step"] == last and summary["step"] >= target, summary
        assert summary["checkpoint"].endswith(f"ckpt-{summary['step']}"), summary
        last = summary["step"]


def test_ctrl_c_on_a_real_video_run_saves_and_resumes_every_time(clip_dir, tmp_path):
    _interrupt_trials(clip_dir, tmp_path / "run", trials=5, seed=0)


@pytest.mark.slow
def test_ctrl_c_on_a_real_video_run_saves_and_resumes_every_time_many(clip_dir, tmp_path):
    _interrupt_trials(clip_dir, tmp_path / "run", trials=20, seed=1)
