"""Trainer (cvrl.md §5): schedule, configs, CLI, precision and XLA switches, TensorBoard, exact resume after
SIGTERM / a kill, multi-worker on 127.0.0.1. Everything runs the tiny CPU config."""
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from cvrl_fast import cli, schedules, trainer  # noqa: E402
from cvrl_fast.configs import Config, load_config  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_STEPS = 10
# R3D-18 at width 1/16 with a 1-layer head: the trainer's mechanics at a third of R3D-50's tracing time.
RUN_OVERRIDES = [f"train.total_steps={TOTAL_STEPS}", "runtime.deterministic=true", "checkpoint.every_steps=4",
                 "model.depth=18", "model.head_num_hidden_layers=1"]


# ------------------------------------------------------------------------------------------------
# schedule (cvrl.md §5 check values)
# ------------------------------------------------------------------------------------------------
def test_warmup_cosine_check_values():
    """cvrl.md §5's check values for K600 at 200 epochs, with the ramp counting the update being made:
    update t + 1 of the warmup gets (t + 1) / W of c(W), so lr(0) = c(W) / W instead of the reference's 0."""
    d, w = 71_488, 1_787
    sched = schedules.WarmupCosine(0.32, d, w)
    for step, want, tol in [(0, 0.3195 / 1787, 1e-7), (893, 0.1598, 1e-4), (1_786, 0.3195, 1e-4),
                            (1_787, 0.3195, 1e-4), (35_744, 0.16, 1e-6), (71_488, 0.0, 1e-7), (80_000, 0.0, 1e-7)]:
        assert abs(float(sched(step)) - want) <= tol + 1e-7, step
        assert abs(schedules.warmup_cosine_lr(step, 0.32, d, w) - want) <= tol + 1e-9, step
    # Warmup ramps to c(W), slightly below lr0, and the cosine does not restart after warmup.
    c_w = 0.5 * 0.32 * (1 + np.cos(np.pi * w / d))
    assert float(sched(w)) == pytest.approx(c_w, rel=1e-6) and c_w < 0.32
    assert float(sched(w - 1)) == pytest.approx(c_w, rel=1e-6)  # the last warmup update reaches c(W)
    assert float(sched(w - 2)) == pytest.approx((w - 1) / w * c_w, rel=1e-5)


@pytest.mark.parametrize("total,requested,want", [(1, 5, 0), (3, 5, 0), (10, 5, 2), (1_000, 1_053, 200),
                                                  (71_488, 1_787, 1_787)])
def test_warmup_never_swallows_the_run(total, requested, want):
    """Warmup is at most a fifth of the run, and every update of every run has a learning rate > 0."""
    w = schedules.warmup_steps_for(total, requested)
    assert w == want
    lrs = schedules.WarmupCosine(0.32, total, w)(tf.range(total)).numpy()
    assert (lrs > 0).all(), lrs[:10]
    want = [schedules.warmup_cosine_lr(t, 0.32, total, w) for t in range(total)]
    np.testing.assert_allclose(lrs, want, rtol=1e-5, atol=1e-8)  # float32 cos near pi/2: ~1e-9 absolute
    assert lrs.max() == pytest.approx(schedules.warmup_cosine_lr(w, 0.32, total, w), rel=1e-5)


def test_warmup_never_swallows_the_run_fails():
    with pytest.raises(ValueError, match="total_steps=0"):
        schedules.warmup_steps_for(0, 5)
    with pytest.raises(ValueError, match="warmup steps=-1"):
        schedules.warmup_steps_for(10, -1)


def test_warmup_cosine_fails():
    with pytest.raises(ValueError, match="total_steps=0"):
        schedules.WarmupCosine(0.1, 0, 0)
    with pytest.raises(ValueError, match="warmup_steps=11"):
        schedules.WarmupCosine(0.1, 10, 11)


def test_steps_table_and_configs():
    k600, k400 = 366_016, 215_570
    assert [schedules.steps_for_epochs(e, k600, 1024) for e in (5, 100, 200, 800)] == [1_787, 35_744, 71_488, 285_950]
    assert [schedules.steps_for_epochs(e, k400, 1024) for e in (5, 100, 200, 800)] == [1_053, 21_052, 42_104, 168_414]
    assert trainer.schedule_steps(load_config("k600_pretrain")) == (71_488, 1_787)
    assert trainer.schedule_steps(load_config("k400_pretrain")) == (42_104, 1_053)
    assert trainer.schedule_steps(load_config("k600_pretrain", ["train.epochs=800"])) == (285_950, 1_787)
    cfg = load_config("k600_pretrain")
    assert (cfg.train.base_learning_rate, cfg.train.momentum, cfg.train.optimizer) == (0.32, 0.9, "sgd")
    assert (cfg.data.num_frames, cfg.data.frame_stride, cfg.data.image_size) == (16, 2, 224)
    assert (cfg.train.temperature, cfg.train.weight_decay) == (0.1, 1e-6)


def test_scaled_learning_rate():
    assert schedules.scaled_learning_rate(0.32, 1024) == pytest.approx(0.32)
    assert schedules.scaled_learning_rate(0.32, 256) == pytest.approx(0.08)
    assert schedules.scaled_learning_rate(0.32, 256, lr_replica_factor=8) == pytest.approx(0.64)
    with pytest.raises(ValueError, match="global_batch_size=0"):
        schedules.scaled_learning_rate(0.32, 0)


def test_lars_update():
    w = keras.Variable([3.0, 4.0], name="kernel")  # ||w|| = 5
    b = keras.Variable([1.0], name="bias")
    opt = schedules.LARS(learning_rate=0.1, momentum=0.9, eta=0.01)
    g = tf.constant([0.0, 2.0])  # ||g|| = 2, trust = 0.01 * 5 / 2 = 0.025
    opt.apply([g, tf.constant([2.0])], [w, b])
    np.testing.assert_allclose(w.numpy(), [3.0, 4.0 - 0.1 * 0.025 * 2.0], rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), [1.0 - 0.1 * 2.0], rtol=1e-6)  # bias: no adaptation
    opt.apply([g, tf.constant([0.0])], [w, b])  # momentum carries the previous update
    np.testing.assert_allclose(b.numpy(), [1.0 - 0.2 - 0.9 * 0.2], rtol=1e-6)


def test_augment_config_comes_from_data_augment():
    """data.augment holds every AugmentConfig field at its default; overrides reach the loader's config."""
    from cvrl_fast._augment import AugmentConfig

    cfg = load_config("tiny_cpu")
    assert trainer.augment_config(cfg) == AugmentConfig(num_frames=cfg.data.num_frames,
                                                        frame_stride=cfg.data.frame_stride,
                                                        crop_size=cfg.data.image_size)
    cfg = load_config("tiny_cpu", ["data.augment.blur_prob=0.5,0.0", "data.augment.target_fps=0",
                                   "data.augment.parity=false"])
    aug = trainer.augment_config(cfg)
    assert aug.blur_prob == (0.5, 0.0) and aug.target_fps is None and aug.parity is False


def test_augment_config_comes_from_data_augment_fails():
    with pytest.raises(KeyError, match="data.augment.no_such_field"):
        load_config("tiny_cpu", ["data.augment.no_such_field=1"])
    with pytest.raises(ValueError, match="jpeg_dct_scaling"):  # range checks still run in C++
        trainer.augment_config(load_config("tiny_cpu", ["data.augment.jpeg_dct_scaling=true"]))


def test_build_optimizer_choices():
    """sgd (paper), lars, and adam (small-scale runs such as the demo), all on the warmup-cosine schedule."""
    kinds = {"sgd": keras.optimizers.SGD, "lars": schedules.LARS, "adam": keras.optimizers.Adam}
    for name, cls in kinds.items():
        cfg = load_config("tiny_cpu", [f"train.optimizer={name}", "train.momentum=0.8"])
        opt, schedule = trainer.build_optimizer(cfg, 100, 10)
        assert isinstance(opt, cls) and isinstance(schedule, schedules.WarmupCosine)
        assert schedule.learning_rate == pytest.approx(schedules.scaled_learning_rate(
            cfg.train.base_learning_rate, cfg.train.global_batch_size, cfg.train.base_batch_size))
        assert (schedule.total_steps, schedule.warmup_steps) == (100, 10)
    assert opt.beta_1 == 0.8  # adam's first-moment decay is train.momentum


def test_build_optimizer_choices_fails():
    with pytest.raises(ValueError, match="train.optimizer='rmsprop': must be sgd, lars or adam"):
        trainer.build_optimizer(load_config("tiny_cpu", ["train.optimizer=rmsprop"]), 100, 10)


# ------------------------------------------------------------------------------------------------
# configs and CLI
# ------------------------------------------------------------------------------------------------
def test_config_override():
    cfg = load_config("tiny_cpu", ["train.global_batch_size=8", "runtime.deterministic=true",
                                   "train.base_learning_rate=0.5", "runtime.precision=mixed_bfloat16",
                                   "data.sources=a.mp4,b.mp4"])
    assert cfg.train.global_batch_size == 8 and cfg.runtime.deterministic is True
    assert cfg.train.base_learning_rate == 0.5 and cfg.runtime.precision == "mixed_bfloat16"
    assert cfg.data.sources == ("a.mp4", "b.mp4")
    assert cfg == Config(cfg.to_dict()) and cfg.copy() == cfg


def test_config_override_fails():
    with pytest.raises(KeyError, match="train.global_batch"):
        load_config("tiny_cpu", ["train.global_batch=8"])
    with pytest.raises(KeyError, match="nope"):
        load_config("tiny_cpu", ["nope.x=1"])
    with pytest.raises(ValueError, match="train.global_batch_size.*'eight' is not an integer"):
        load_config("tiny_cpu", ["train.global_batch_size=eight"])
    with pytest.raises(ValueError, match="expected key=value"):
        load_config("tiny_cpu", ["train.global_batch_size"])
    with pytest.raises(FileNotFoundError, match="no_such_config"):
        load_config("no_such_config")
    with pytest.raises(AttributeError, match="no key 'lr'"):
        load_config("tiny_cpu").train.lr = 1


def _cli_error(capsys, *argv) -> str:
    """Run the CLI in-process on a user error: exit code 2 and exactly one line on stderr, no traceback."""
    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cvrl-fast {argv[0]}: error: "), err
    return err[0]


def test_cli_pretrain_fails(tmp_path, capsys):
    base = ["pretrain", "--config", "tiny_cpu", "--workdir", str(tmp_path)]
    assert "unknown config key 'train.nope'" in _cli_error(capsys, *base, "--config.train.nope=1")
    with pytest.raises(SystemExit, match="unexpected argument '--steps=3'"):
        cli.main(base + ["--steps=3"])
    assert "no_such_config" in _cli_error(capsys, "pretrain", "--config", "no_such_config", "--workdir", "w")
    assert "train.global_batch_size=0: must be >= 1" in _cli_error(capsys, *base, "--config.train.global_batch_size=0")
    assert "'eight' is not a number" in _cli_error(capsys, *base, "--config.train.epochs=eight")
    (tmp_path / "afile").write_text("x")
    assert "is a file, not a directory" in _cli_error(capsys, "pretrain", "--config", "tiny_cpu",
                                                      "--workdir", str(tmp_path / "afile"))
    assert "does not exist" in _cli_error(capsys, *base, f"--config.data.sources={tmp_path / 'nope.mp4'}")
    assert "needs --workdir" in _cli_error(capsys, "pretrain", "--config", "tiny_cpu")
    assert sorted(os.listdir(tmp_path)) == ["afile"]  # every error came before anything was written


def test_cli_pretrain_fails_with_traceback_when_verbose(tmp_path):
    with pytest.raises(ValueError, match="train.global_batch_size=0"):
        cli.main(["pretrain", "--config", "tiny_cpu", "--workdir", str(tmp_path), "--verbose",
                  "--config.train.global_batch_size=0"])


def _as_json(cfg):
    return json.loads(json.dumps(cfg.to_dict(), default=list))


def test_cli_print_config(capsys, tmp_path):
    """--print-config shows the effective config; saved as a file it loads back as the same config."""
    assert cli.main(["pretrain", "--config", "tiny_cpu", "--print-config", "--config.train.epochs=3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["train"]["epochs"] == 3.0 and printed["model"]["width_multiplier"] == 0.0625
    assert printed == _as_json(load_config("tiny_cpu", ["train.epochs=3"]))
    (tmp_path / "run.json").write_text(json.dumps(printed))
    again = load_config(str(tmp_path / "run.json"), ["train.global_batch_size=8"])
    assert _as_json(again) == _as_json(load_config("tiny_cpu", ["train.epochs=3", "train.global_batch_size=8"]))


def test_validate_config_fails():
    for override, message in [("train.global_batch_size=0", "train.global_batch_size=0: must be >= 1"),
                              ("train.temperature=0", "train.temperature=0.0: must be > 0"),
                              ("checkpoint.every_steps=0", "checkpoint.every_steps=0: must be >= 1"),
                              ("train.momentum=1", "train.momentum=1.0: must be in [0, 1)"),
                              ("train.epochs=0", "train.epochs=0.0: must be > 0")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            trainer.validate_config(load_config("tiny_cpu", [override]))
    trainer.validate_config(load_config("tiny_cpu", ["train.epochs=0", "train.total_steps=3"]))


def test_setup_switches_fail():
    with pytest.raises(ValueError, match="runtime.strategy='gpu'"):
        trainer.make_strategy("gpu")
    with pytest.raises(ValueError, match="runtime.precision='float8'"):
        trainer.set_precision("float8")
    with pytest.raises(ValueError, match="runtime.jit_compile='maybe'"):
        trainer.resolve_jit_compile("maybe")
    assert trainer.resolve_jit_compile("auto") is False  # this CPU-only machine: XLA off by default
    old = os.environ.pop("TF_CONFIG", None)
    try:
        with pytest.raises(ValueError, match="TF_CONFIG"):
            trainer.make_strategy("multi_worker")
    finally:
        if old is not None:
            os.environ["TF_CONFIG"] = old


def test_train_fails_without_sources(tmp_path):
    cfg = load_config("tiny_cpu", ["data.source=kinetics400", "train.total_steps=2"])
    with pytest.raises(ValueError, match="data.source='kinetics400' needs data.sources"):
        trainer.train(cfg, str(tmp_path))
    assert os.listdir(tmp_path) == []  # refused before anything was written


def _clips():
    clips = sorted(glob.glob(os.path.join(ROOT, ".cache", "clips", "*.mp4")))
    assert len(clips) >= 4, "run scripts/fetch_clips.py first (make test does)"
    return clips


def test_plan_data_sources_alone_select_the_files(tmp_path):
    """data.sources alone trains on them (the epoch is the videos found); only an empty data.sources
    (data.source=auto) or data.source=synthetic gives synthetic data."""
    clips = _clips()
    plan = trainer.plan_data(load_config("tiny_cpu", ["data.sources=" + ",".join(clips)]))
    assert plan == trainer.DataPlan("files", len(clips), len(clips))
    plan = trainer.plan_data(load_config("tiny_cpu", [f"data.sources={os.path.dirname(clips[0])}"]))
    assert plan.kind == "files" and plan.num_sources >= len(clips)
    assert trainer.plan_data(load_config("tiny_cpu")) == trainer.DataPlan("synthetic", 0, 64)
    assert trainer.plan_data(load_config("tiny_cpu", ["data.source=synthetic"])).kind == "synthetic"
    cfg = load_config("tiny_cpu", ["data.sources=" + ",".join(clips), "data.num_train_videos=1000"])
    assert trainer.plan_data(cfg).videos_per_epoch == 1000  # an explicit epoch length wins (schedule parity)
    d, _ = trainer.schedule_steps(load_config("tiny_cpu", ["data.sources=" + ",".join(clips[:4])]),
                                  trainer.plan_data(load_config("tiny_cpu", ["data.sources=" + ",".join(clips[:4])])).videos_per_epoch)
    assert d == 1  # 1 epoch of 4 videos at batch 4


def test_plan_data_sources_alone_select_the_files_fails(tmp_path):
    clips = _clips()
    with pytest.raises(ValueError, match="data.source='synthetic' contradicts data.sources"):
        trainer.plan_data(load_config("tiny_cpu", ["data.source=synthetic", "data.sources=" + clips[0]]))
    with pytest.raises(ValueError, match=r"train.global_batch_size=4 is larger than the 2 videos .* at most 2"):
        trainer.plan_data(load_config("tiny_cpu", ["data.sources=" + ",".join(clips[:2])]))
    listed = tmp_path / "list.csv"
    listed.write_text(f"path\n{clips[0]}\n{clips[1]}\nmissing.mp4\n")
    with pytest.raises(FileNotFoundError, match="1 of 3 listed videos do not exist, first: .*missing.mp4"):
        trainer.plan_data(load_config("tiny_cpu", [f"data.sources={listed}"]))


# ------------------------------------------------------------------------------------------------
# training runs
# ------------------------------------------------------------------------------------------------
def read_scalars(workdir):
    out = {}
    for path in glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*")):
        for raw in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for v in event.summary.value:
                assert v.metadata.plugin_data.plugin_name == "scalars"
                out.setdefault(v.tag, {})[event.step] = float(tf.make_ndarray(v.tensor))
    return out


def checkpoint_weights(workdir):
    """{key: array} of the model variables in the latest checkpoint of a run."""
    path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k.startswith("model/")}, path


def assert_same_weights(workdir, ref_workdir):
    """The latest checkpoints of two runs hold the same model variables, bit for bit."""
    weights, _ = checkpoint_weights(workdir)
    ref_weights, _ = checkpoint_weights(ref_workdir)
    assert set(weights) == set(ref_weights)
    for key in ref_weights:
        np.testing.assert_array_equal(weights[key], ref_weights[key], err_msg=key)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The uninterrupted deterministic run every other run is compared with."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    result = trainer.train(load_config("tiny_cpu", RUN_OVERRIDES), workdir)
    return workdir, result


def test_train_tiny_logs_and_checkpoints(reference_run):
    workdir, result = reference_run
    assert result.step == TOTAL_STEPS and not result.interrupted
    assert result.checkpoint_path.endswith(f"ckpt-{TOTAL_STEPS}")
    scalars = read_scalars(workdir)
    for tag in ("loss", "contrastive_loss", "regularization_loss", "contrastive_accuracy", "contrastive_entropy",
                "learning_rate", "clips_per_second", "steps_per_second", "input_wait_seconds_per_step"):
        assert sorted(scalars[tag]) == list(range(1, TOTAL_STEPS + 1)), tag
    losses = scalars["loss"]
    assert all(np.isfinite(v) for v in losses.values())
    # Loss = contrastive + weight decay (kept out of the contrastive term).
    for s in losses:
        assert losses[s] == pytest.approx(scalars["contrastive_loss"][s] + scalars["regularization_loss"][s], rel=1e-5)
    assert all(v > 0 for v in scalars["regularization_loss"].values())
    cfg = load_config("tiny_cpu", RUN_OVERRIDES)
    d, w = trainer.schedule_steps(cfg)
    lr0 = schedules.scaled_learning_rate(0.32, 4)
    for s, lr in scalars["learning_rate"].items():
        assert lr == pytest.approx(schedules.warmup_cosine_lr(s - 1, lr0, d, w), rel=1e-5, abs=1e-9)
    assert all(v > 0 for v in scalars["clips_per_second"].values())
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["train"]["total_steps"] == TOTAL_STEPS
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[0] == "checkpoint"


@pytest.mark.slow  # the SIGTERM test below covers exact resume in the default run
def test_exact_resume_in_process(reference_run, tmp_path):
    """Stop after 3 steps (checkpoint), start again: same weights as the uninterrupted run, bit for bit."""
    first = trainer.train(load_config("tiny_cpu", RUN_OVERRIDES + ["train.stop_after_steps=3"]), str(tmp_path))
    assert first.step == 3
    second = trainer.train(load_config("tiny_cpu", RUN_OVERRIDES), str(tmp_path))
    assert second.step == TOTAL_STEPS
    assert_same_weights(str(tmp_path), reference_run[0])


def _start_cli(workdir, extra=(), env=None, overrides=RUN_OVERRIDES):
    args = [sys.executable, "-m", "cvrl_fast.cli", "pretrain", "--config", "tiny_cpu", "--workdir", workdir]
    args += [f"--config.{o}" for o in list(overrides) + list(extra)]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _wait_for_step(proc, step, timeout_s=240):
    """Read the run's progress lines (stdout) until step `step` is done."""
    deadline = time.monotonic() + timeout_s
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"pretrain: {step}/"):
            return seen
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError("trainer never reached step %d:\n%s" % (step, "".join(seen[-30:])))


def _summary(workdir, worker=None):
    name = "summary.json" if worker is None else f"summary_worker{worker}.json"
    with open(os.path.join(workdir, name)) as f:
        return json.load(f)


def test_sigterm_saves_checkpoint_and_resume_is_exact(reference_run, tmp_path):
    workdir = str(tmp_path)
    proc = _start_cli(workdir)
    _wait_for_step(proc, 1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    summary = _summary(workdir)
    assert summary["interrupted"] is True and summary["signal"] == "SIGTERM", summary
    assert 1 <= summary["step"] < TOTAL_STEPS, summary
    assert f"pretrain: SIGTERM: saved {summary['checkpoint']} at step {summary['step']}" in stdout
    _, path = checkpoint_weights(workdir)
    assert path.endswith(f"ckpt-{summary['step']}")
    assert int(tf.train.load_checkpoint(path).get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE")) == summary["step"]
    # Resume to the end: identical to the uninterrupted run.
    result = trainer.train(load_config("tiny_cpu", RUN_OVERRIDES), workdir)
    assert result.step == TOTAL_STEPS
    assert_same_weights(workdir, reference_run[0])


@pytest.mark.slow
def test_resume_after_sigkill_is_exact(reference_run, tmp_path):
    """A hard kill (no handler runs) after the step-4 checkpoint: resume from it, same final weights."""
    workdir = str(tmp_path)
    proc = _start_cli(workdir)
    _wait_for_step(proc, 5)
    proc.kill()
    proc.communicate(timeout=60)
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")) is not None
    trainer.train(load_config("tiny_cpu", RUN_OVERRIDES), workdir)
    assert_same_weights(workdir, reference_run[0])


def test_kill_during_checkpoint_save_resumes_from_the_last_complete_one(reference_run, tmp_path):
    """SIGKILL in the middle of the step-8 save (ckpt-8's files written, not yet made the latest): resume
    picks ckpt-4, which is intact, and ends exactly where the uninterrupted run ends."""
    workdir = str(tmp_path)
    code = ("import sys; from cvrl_fast import trainer; from cvrl_fast.configs import load_config; "
            f"trainer.train(load_config('tiny_cpu', {RUN_OVERRIDES!r}), sys.argv[1], _test_kill_in_save=8)")
    proc = subprocess.run([sys.executable, "-c", code, workdir], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    ckpt_dir = os.path.join(workdir, "checkpoints")
    assert tf.train.latest_checkpoint(ckpt_dir).endswith("ckpt-4")
    assert os.path.exists(os.path.join(ckpt_dir, "ckpt-8.index"))  # the half-done save is there, unnamed
    result = trainer.train(load_config("tiny_cpu", RUN_OVERRIDES), workdir)
    assert result.start_step == 4 and result.step == TOTAL_STEPS
    assert_same_weights(workdir, reference_run[0])


@pytest.mark.parametrize("damage", ["truncate_data", "flip_data_byte", "flip_index_byte"])
def test_kill_during_checkpoint_save_resumes_from_the_last_complete_one_fails_for_a_corrupt_checkpoint(
        reference_run, tmp_path, damage):
    """A latest checkpoint whose files were damaged after it was written is refused, naming it."""
    workdir = str(tmp_path / "run")
    shutil.copytree(reference_run[0], workdir)
    prefix = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    path = prefix + (".index" if damage == "flip_index_byte" else ".data-00000-of-00001")
    if damage == "truncate_data":
        os.truncate(path, os.path.getsize(path) // 2)
    else:
        blob = bytearray(open(path, "rb").read())
        blob[len(blob) // 2] ^= 0xFF
        open(path, "wb").write(bytes(blob))
    with pytest.raises(ValueError, match=re.escape(f"{prefix}: cannot resume from this checkpoint: it does not "
                                                   "match this model or its files are corrupt or truncated")):
        trainer.train(load_config("tiny_cpu", RUN_OVERRIDES), workdir)


# Runs in its own mount namespace (`unshare -rm`), where it can mount a tmpfs the size of one checkpoint and
# its backbone export: the step-8 save finds the disk full. Then the tmpfs grows and the same run resumes.
_FULL_DISK_SCRIPT = """
import os, shutil, subprocess, sys
from cvrl_fast import trainer
from cvrl_fast.configs import load_config
mount, out = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1600k", "tmpfs", mount], check=True)
cfg = load_config("tiny_cpu", %r)
try:
    trainer.train(cfg, os.path.join(mount, "run"))
    print("ERROR: no error")
except trainer.CheckpointWriteError as e:
    print("ERROR:", e)
print("LEFT:", sorted(os.listdir(os.path.join(mount, "run", "checkpoints"))))
subprocess.run(["mount", "-o", "remount,size=64m", mount], check=True)
result = trainer.train(cfg, os.path.join(mount, "run"))
print("RESUMED:", result.start_step, result.step)
shutil.copytree(os.path.join(mount, "run", "checkpoints"), os.path.join(out, "checkpoints"))
""" % (RUN_OVERRIDES,)


def test_full_disk_during_checkpoint_save(reference_run, tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["unshare", "-rm", sys.executable, "-c", _FULL_DISK_SCRIPT, str(mount), str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in proc.stdout.splitlines()
             if line.startswith(("ERROR:", "LEFT:", "RESUMED:"))}
    ckpts = os.path.join(str(mount), "run", "checkpoints")
    assert lines["ERROR"] == (f"training stopped at step 8: could not write the checkpoint {ckpts}/ckpt-8 (No space "
                              f"left on device); the last complete checkpoint, {ckpts}/ckpt-4 (step 4), is the one "
                              "a rerun of the same command resumes from")
    # No half-written checkpoint is left to take space or be picked up.
    assert lines["LEFT"] == "['checkpoint', 'ckpt-4.data-00000-of-00001', 'ckpt-4.index']"
    assert lines["RESUMED"] == f"4 {TOTAL_STEPS}"
    assert_same_weights(str(tmp_path), reference_run[0])


# TF has no float16 MaxPool3D kernel on CPU (GPU only); XLA's CPU backend has one, so on this machine the
# float16 path runs compiled. float16 is the GPU setting; bfloat16 is the CPU/TPU one.
def _check_precision_run(precision, jit, workdir):
    """Train 2 steps at `precision` and check the run: restored policy, dtypes, finite losses and weights,
    low-precision embeddings pointing where the float32 ones do. Shared by the in-process float16 test
    and the bfloat16 child process below."""
    cfg = load_config("tiny_cpu", RUN_OVERRIDES + [f"runtime.precision={precision}", "train.stop_after_steps=2",
                                                   f"runtime.jit_compile={jit}"])
    result = trainer.train(cfg, workdir)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    conv = result.backbone.get_layer("stem_conv")
    assert conv.compute_dtype == precision.split("_")[1] and conv.kernel.dtype == "float32"
    assert result.model.output.dtype == "float32"
    assert np.isfinite(list(read_scalars(workdir)["loss"].values())).all()
    assert all(np.isfinite(w.numpy()).all() for w in result.model.weights)
    # Numerics: with the same weights and input, the low-precision embeddings point where the float32 ones do.
    x = tf.random.stateless_uniform([4, 4, 32, 32, 3], seed=[1, 2])

    def forward(model):
        call = tf.function(lambda t: model(t, training=False), jit_compile=(jit == "true"))
        return call(x).numpy()

    low = forward(result.model)
    keras.mixed_precision.set_global_policy("float32")
    ref_model, _ = trainer.build_model(cfg)
    ref_model.set_weights(result.model.get_weights())
    high = forward(ref_model)
    cos = np.sum(low * high, 1) / np.linalg.norm(low, axis=1) / np.linalg.norm(high, axis=1)
    assert cos.min() > 0.98, cos
    scale_var = [v for v in tf.train.load_checkpoint(result.checkpoint_path).get_variable_to_shape_map() if "scale" in v]
    assert bool(scale_var) == (precision == "mixed_float16")  # dynamic loss scale is checkpointed for fp16 only


@pytest.mark.slow
def test_precision_switch_float16(tmp_path):
    _check_precision_run("mixed_float16", "true", str(tmp_path))


def test_precision_switch_bfloat16(tmp_path):
    """bfloat16 on CPU as the CLI runs it: the CLI's TensorFlow set-up (oneDNN's bfloat16 kernels off,
    README "bfloat16 on CPU") before TensorFlow is imported, then a run with every weight finite and
    embeddings close to float32's. In a child process, since this one imported TensorFlow long ago."""
    code = ("import sys; sys.path.insert(0, 'tests')\n"
            "from cvrl_fast import cli; cli._prepare_tensorflow(True, 'mixed_bfloat16')\n"
            "import test_trainer; test_trainer._check_precision_run('mixed_bfloat16', 'false', sys.argv[1])\n"
            "print('bfloat16 run ok')\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0 and "bfloat16 run ok" in proc.stdout, proc.stderr[-3000:]


def test_cli_turns_off_onednn_for_bfloat16(monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    cli._prepare_tensorflow(True, "float32")
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ  # float32 keeps oneDNN where TF turns it on
    cli._prepare_tensorflow(True, "mixed_bfloat16")
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")  # a user's explicit choice is kept (and refused below)
    cli._prepare_tensorflow(True, "mixed_bfloat16")
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"


def test_bfloat16_refused_where_onednn_bfloat16_kernels_run(tmp_path, monkeypatch):
    """Where oneDNN's bfloat16 kernels would run the step (oneDNN on, a CPU with AVX-512: not this
    machine, so the probe is stood in for), mixed_bfloat16 on CPU replicas is refused with the fix."""
    monkeypatch.setattr(trainer, "onednn_bfloat16_active", lambda: True)
    cfg = load_config("tiny_cpu", RUN_OVERRIDES + ["runtime.precision=mixed_bfloat16", "train.stop_after_steps=1"])
    with pytest.raises(ValueError, match="oneDNN bfloat16 kernels.*TF_ENABLE_ONEDNN_OPTS=0"):
        trainer.train(cfg, str(tmp_path))
    assert not os.path.exists(os.path.join(tmp_path, "config.json"))


def test_bfloat16_refused_where_onednn_bfloat16_kernels_run_fails_for_float32(tmp_path, monkeypatch):
    """The refusal is for bfloat16 only: float32 runs on the same (stood-in) CPU."""
    monkeypatch.setattr(trainer, "onednn_bfloat16_active", lambda: True)
    result = trainer.train(load_config("tiny_cpu", RUN_OVERRIDES + ["train.stop_after_steps=1"]), str(tmp_path))
    assert result.step == 1
    trainer.check_precision("mixed_bfloat16", "GPU")  # GPU replicas never run oneDNN's kernels


def test_onednn_bfloat16_probe_reads_this_process():
    """The probe agrees with TensorFlow's own report of this process: oneDNN on or off, and the CPU."""
    from tensorflow.python.util import _pywrap_util_port, _pywrap_utils

    expect = _pywrap_util_port.IsMklEnabled() and _pywrap_utils.IsDataTypeSupportedByOneDNNOnThisCPU(
        tf.bfloat16.as_datatype_enum)
    assert trainer.onednn_bfloat16_active() is bool(expect)


@pytest.mark.slow  # XLA compilation of the tiny step: ~30 s on 2 cores
def test_xla_switch(reference_run, tmp_path):
    ref = read_scalars(reference_run[0])["loss"]
    cfg = load_config("tiny_cpu", RUN_OVERRIDES + ["runtime.jit_compile=true", "train.stop_after_steps=2"])
    trainer.train(cfg, str(tmp_path))
    losses = read_scalars(str(tmp_path))["loss"]
    assert losses[1] == pytest.approx(ref[1], rel=1e-4)
    assert losses[2] == pytest.approx(ref[2], rel=1e-3)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow  # two TF processes + gRPC collectives: ~2 min on 2 cores
def test_multi_worker_two_processes(reference_run, tmp_path):
    """MultiWorkerMirroredStrategy, 2 worker processes on 127.0.0.1, 2 videos each = the 1-process run."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    steps = 3
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(_start_cli(str(tmp_path), ["runtime.strategy=multi_worker", f"train.stop_after_steps={steps}"],
                                env={"TF_CONFIG": tf_config}))
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    summaries = [_summary(str(tmp_path)), _summary(str(tmp_path), worker=1)]
    assert [s["step"] for s in summaries] == [steps, steps]
    ref = read_scalars(reference_run[0])["loss"]
    got = read_scalars(str(tmp_path))["loss"]  # the chief's log
    for s in range(1, steps + 1):
        assert got[s] == pytest.approx(ref[s], rel=1e-4), s
    chief = tf.train.load_checkpoint(os.path.join(tmp_path, "checkpoints", f"ckpt-{steps}"))
    other = tf.train.load_checkpoint(os.path.join(tmp_path, "checkpoints_worker1", f"ckpt-{steps}"))
    for key in chief.get_variable_to_shape_map():
        if key.startswith("model/"):
            np.testing.assert_array_equal(chief.get_tensor(key), other.get_tensor(key), err_msg=key)


def _multi_worker_run(workdir, extra):
    """Two MultiWorkerMirroredStrategy workers on 127.0.0.1 training in `workdir`; their stderr tails."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = [_start_cli(workdir, ["runtime.strategy=multi_worker"] + list(extra),
                        env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
             for i in range(2)]
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _ in outs]


@pytest.mark.slow  # three two-process runs: ~4 min on 2 cores
def test_multi_worker_graph_engine_checkpoints_its_iterator(tmp_path):
    """Two workers, files, the graph engine read through HostInput: each worker's checkpoint holds its own
    iterator, a run stopped after step 1 and resumed ends with the weights of the loader engine's
    uninterrupted run (tf.distribute's distributed iterator), on both workers."""
    files = ["data.sources=" + ",".join(_clips()), "train.total_steps=3", "checkpoint.every_steps=1"]
    _multi_worker_run(str(tmp_path / "loader"), files + ["data.engine=loader"])
    graph = str(tmp_path / "graph")
    outs = _multi_worker_run(graph, files + ["train.stop_after_steps=1"])
    assert "; graph engine (data.engine=auto)" in outs[0]
    _multi_worker_run(graph, files)
    for ckpts in ("checkpoints", "checkpoints_worker1"):
        ours = tf.train.load_checkpoint(os.path.join(graph, ckpts, "ckpt-3"))
        theirs = tf.train.load_checkpoint(os.path.join(tmp_path, "loader", ckpts, "ckpt-3"))
        # Every saved tensor (here the trainable weights are saved through the optimizer's variable list).
        keys = set(ours.get_variable_to_shape_map()) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
        assert keys - set(theirs.get_variable_to_shape_map()) == {"input_iterator/.ATTRIBUTES/ITERATOR_STATE"}
        keys.discard("input_iterator/.ATTRIBUTES/ITERATOR_STATE")
        assert len(keys) > 150
        for key in sorted(keys):
            np.testing.assert_array_equal(ours.get_tensor(key), theirs.get_tensor(key), err_msg=key)


@pytest.mark.slow  # three short runs through the C++ loader: ~1 min on 2 cores
def test_train_with_pair_loader_resumes_exactly(tmp_path):
    """data.source != synthetic: the trainer reads cvrl_fast.data.pretrain_dataset and resumes it at the
    checkpointed step (start_batch), so the resumed run equals the uninterrupted one."""
    clips = _clips()
    overrides = RUN_OVERRIDES + ["data.sources=" + ",".join(clips), "train.total_steps=3", "data.engine=loader"]
    full = trainer.train(load_config("tiny_cpu", overrides), str(tmp_path / "full"))
    assert full.step == 3 and np.isfinite(full.metrics["loss"])
    part = trainer.train(load_config("tiny_cpu", overrides + ["train.stop_after_steps=1"]), str(tmp_path / "part"))
    assert part.step == 1
    trainer.train(load_config("tiny_cpu", overrides), str(tmp_path / "part"))
    a, _ = checkpoint_weights(str(tmp_path / "full"))
    b, _ = checkpoint_weights(str(tmp_path / "part"))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    state = tf.train.load_checkpoint(str(tmp_path / "part" / "checkpoints" / "ckpt-3"))
    assert json.loads(state.get_tensor("loader_state/.ATTRIBUTES/VARIABLE_VALUE")) == {"source": "files", "next_step": 3}


@pytest.fixture(scope="module")
def graph_sources(tmp_path_factory):
    """The real clips and one file that does not decode."""
    broken = tmp_path_factory.mktemp("broken") / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    return _clips() + [str(broken)]


@pytest.fixture(scope="module")
def loader_engine_run(tmp_path_factory, graph_sources):
    workdir = str(tmp_path_factory.mktemp("loader_engine"))
    cfg = load_config("tiny_cpu", RUN_OVERRIDES + ["data.sources=" + ",".join(graph_sources), "train.total_steps=3",
                                                   "data.engine=loader"])
    return workdir, trainer.train(cfg, workdir)


def _graph_overrides(graph_sources):
    return RUN_OVERRIDES + ["data.sources=" + ",".join(graph_sources), "train.total_steps=3", "data.engine=graph"]


@pytest.mark.slow  # four short runs (the loader engine's, then two through the graph engine): ~1.5 min on 2 cores
def test_train_with_graph_engine_resumes_exactly(loader_engine_run, graph_sources, tmp_path):
    """data.engine=graph: the graph pipeline's iterator is in the checkpoint, the resumed run builds its
    pipeline from batch 0 and restores the position, and ends with the weights of the uninterrupted run;
    both equal the loader engine's run (the same batches), and summary.json names the skipped file."""
    overrides = _graph_overrides(graph_sources)
    workdir = str(tmp_path / "part")
    part = trainer.train(load_config("tiny_cpu", overrides + ["train.stop_after_steps=1"]), workdir)
    assert part.step == 1
    reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints", "ckpt-1"))
    assert "input_iterator/.ATTRIBUTES/ITERATOR_STATE" in reader.get_variable_to_shape_map()
    rest = trainer.train(load_config("tiny_cpu", overrides), workdir)
    assert rest.start_step == 1 and rest.step == 3
    assert_same_weights(workdir, loader_engine_run[0])
    for run in (workdir, loader_engine_run[0]):
        assert [s["source"] for s in _summary(run)["skipped"]] == [graph_sources[-1]], _summary(run)


@pytest.mark.slow  # two short runs, after the loader engine's: ~1 min on 2 cores
def test_train_with_graph_engine_resumes_exactly_fails(loader_engine_run, graph_sources, tmp_path, monkeypatch):
    """With the iterator left out of the resumed run's checkpoint (so nothing restores it), its pipeline,
    built from batch 0, reads batch 0 again, and the weights differ."""
    overrides = _graph_overrides(graph_sources)
    workdir = str(tmp_path / "part")
    trainer.train(load_config("tiny_cpu", overrides + ["train.stop_after_steps=1"]), workdir)
    monkeypatch.setattr(trainer, "_attach_input_iterator", lambda ckpt, iterator: None)
    trainer.train(load_config("tiny_cpu", overrides), workdir)
    with pytest.raises(AssertionError):
        assert_same_weights(workdir, loader_engine_run[0])


@pytest.mark.parametrize("engine", ["loader", "graph"])
def test_train_with_no_usable_video_stops_with_the_engine_message(tmp_path, engine, caplog, capfd):
    """Both engines' own failure reaches the loop as one InputError naming the step (the graph op's
    DataLossError is unwrapped like the loader's RuntimeError), and both log each skipped file once
    through the cvrl_fast logger, not from C++ on stderr."""
    broken = [tmp_path / "broken1.mp4", tmp_path / "broken2.mp4"]
    for p in broken:
        p.write_bytes(b"not a video" * 100)
    cfg = load_config("tiny_cpu", RUN_OVERRIDES + ["data.sources=" + ",".join(map(str, broken)),
                                                   "train.global_batch_size=2", f"data.engine={engine}"])
    message = "every one of the 2 sources failed to decode; first error: .*broken"
    with pytest.raises(trainer.InputError, match="training stopped at step 1: data.sources: " + message) as e:
        trainer.train(cfg, str(tmp_path / "run"))
    assert "[[" not in str(e.value) and "\n" not in str(e.value)  # TF's node annotations are not in it
    logged = [r.getMessage() for r in caplog.records if r.name == "cvrl_fast"]
    for p in broken:
        assert sum(m.startswith(f"skipping {p}: ") for m in logged) == 1, logged
    assert "skipping" not in capfd.readouterr().err


def test_engine_and_service_config_fails(graph_sources, tmp_path):
    with pytest.raises(ValueError, match=r"data.engine='tf': must be one of \('auto', 'graph', 'loader'\)"):
        trainer.validate_config(load_config("tiny_cpu", ["data.engine=tf"]))
    with pytest.raises(ValueError, match="data.service_address='h:1' needs data.engine=graph"):
        trainer.validate_config(load_config("tiny_cpu", ["data.service_address=h:1", "data.engine=loader"]))
    trainer.validate_config(load_config("tiny_cpu", ["data.service_address=h:1"]))  # auto: the graph engine


def test_engine_auto_is_graph_when_the_op_library_loads():
    """The trainer's default input engine is the graph engine (where the op library is built, as here)."""
    cfg = load_config("tiny_cpu")
    assert cfg.data.engine == "auto"
    assert trainer.resolve_engine(cfg) == ("graph", "data.engine=auto")
    assert trainer.resolve_engine(load_config("tiny_cpu", ["data.engine=loader"]))[0] == "loader"
    assert trainer.resolve_engine(load_config("tiny_cpu", ["data.loader=dali"]))[0] == "loader"


def test_engine_auto_is_graph_when_the_op_library_loads_fails(monkeypatch):
    """Without a usable op library, auto falls back to the loader engine and says why; an explicit
    data.service_address then cannot run and says so."""
    from cvrl_fast import tf_ops

    def missing():
        raise ImportError("cvrl_fast's TensorFlow op library (_tf_ops.so) is not installed")

    monkeypatch.setattr(tf_ops, "library", missing)
    engine, why = trainer.resolve_engine(load_config("tiny_cpu"))
    assert engine == "loader" and "_tf_ops.so) is not installed" in why
    with pytest.raises(ValueError, match="data.service_address='h:1' needs the graph engine, whose op library is "
                                         "not usable here"):
        trainer.resolve_engine(load_config("tiny_cpu", ["data.service_address=h:1"]))


@pytest.mark.slow  # two TF processes: ~2 min on 2 cores
def test_multi_worker_sigterm_stops_all_workers(tmp_path):
    """SIGTERM to the chief only: both workers agree (all-reduce at log steps), save and exit at the same step."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(_start_cli(str(tmp_path), ["runtime.strategy=multi_worker", "log.every_steps=2"],
                                env={"TF_CONFIG": tf_config}))
    _wait_for_step(procs[0], 2, timeout_s=300)
    procs[0].send_signal(signal.SIGTERM)
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    summaries = [_summary(str(tmp_path)), _summary(str(tmp_path), worker=1)]
    assert summaries[0]["interrupted"] and summaries[1]["interrupted"], summaries
    step = summaries[0]["step"]
    assert summaries[1]["step"] == step and step % 2 == 0 and step < TOTAL_STEPS, summaries
    assert tf.train.latest_checkpoint(os.path.join(tmp_path, "checkpoints")).endswith(f"ckpt-{step}")
    assert tf.train.latest_checkpoint(os.path.join(tmp_path, "checkpoints_worker1")).endswith(f"ckpt-{step}")


# ------------------------------------------------------------------------------------------------
# non-finite values, signals, the workdir's memory, the backbone export, quiet output
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,what", [("loss", "a non-finite loss or gradient"), ("weights", "non-finite weights")])
def test_nonfinite_stops_the_run_and_keeps_the_last_checkpoint(reference_run, tmp_path, kind, what):
    """A NaN at step 6 stops the run there, naming the step; ckpt-4 (the last one saved) is untouched:
    resuming from it (without the NaN) ends exactly where the uninterrupted run ends."""
    workdir = str(tmp_path)
    cfg = load_config("tiny_cpu", RUN_OVERRIDES)
    with pytest.raises(trainer.NonFiniteError, match=re.escape(
            f"training stopped at step 6: {what} (nothing was saved after that step; the last checkpoint, "
            f"{os.path.join(workdir, 'checkpoints', 'ckpt-4')} (step 4), is unchanged)")):
        trainer.train(cfg, workdir, _test_nonfinite=(kind, 6))
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-4")
    assert sorted(p for p in os.listdir(os.path.join(workdir, "backbone")) if p.endswith(".index")) == ["backbone-4.index"]
    weights, _ = checkpoint_weights(workdir)
    assert all(np.isfinite(w).all() for w in weights.values() if w.dtype.kind == "f")
    trainer.train(cfg, workdir)
    assert_same_weights(workdir, reference_run[0])


def test_nonfinite_stops_the_run_and_keeps_the_last_checkpoint_fails_before_any_checkpoint(tmp_path, capsys):
    """A NaN on a checkpoint step is caught before that save; through the CLI it is one line and exit 1."""
    with pytest.raises(trainer.NonFiniteError, match="at step 4: .*no checkpoint had been saved"):
        trainer.train(load_config("tiny_cpu", RUN_OVERRIDES), str(tmp_path / "a"), _test_nonfinite=("loss", 4))
    assert tf.train.latest_checkpoint(str(tmp_path / "a" / "checkpoints")) is None
    error = trainer.NonFiniteError("training stopped at step 3: a non-finite loss or gradient (...)")

    def raise_nonfinite(cfg, workdir):
        raise error

    original = trainer.main_pretrain
    trainer.main_pretrain = raise_nonfinite
    try:
        assert cli.main(["pretrain", "--config", "tiny_cpu", "--workdir", str(tmp_path / "b")]) == 1
    finally:
        trainer.main_pretrain = original
    assert capsys.readouterr().err.strip() == f"cvrl-fast pretrain: error: {error}"


def test_sigint_saves_checkpoint_and_exits_cleanly(reference_run, tmp_path):
    """Ctrl-C behaves like SIGTERM: a checkpoint at the end of the step, exit 0, no traceback; resume is exact."""
    workdir = str(tmp_path)
    proc = _start_cli(workdir)
    _wait_for_step(proc, 2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    summary = _summary(workdir)
    assert summary["signal"] == "SIGINT" and 2 <= summary["step"] < TOTAL_STEPS, summary
    assert f"pretrain: SIGINT: saved {summary['checkpoint']} at step {summary['step']}" in stdout
    trainer.train(load_config("tiny_cpu", RUN_OVERRIDES), workdir)
    assert_same_weights(workdir, reference_run[0])


def test_sigint_saves_checkpoint_and_exits_cleanly_fails_on_a_second_ctrl_c(tmp_path):
    """A second Ctrl-C ends the process at once (default action), without waiting for the save. The child
    makes each save take 20 s, so the second Ctrl-C surely lands while the first one's save runs."""
    code = ("import sys, time\n"
            "from cvrl_fast import cli, trainer\n"
            "save = trainer.save_backbone_snapshot\n"
            "trainer.save_backbone_snapshot = lambda *a: (time.sleep(20), save(*a))[1]\n"
            "sys.exit(cli.main(sys.argv[1:]))\n")
    args = ["pretrain", "--config", "tiny_cpu", "--workdir", str(tmp_path)]
    args += [f"--config.{o}" for o in RUN_OVERRIDES + ["train.total_steps=1000", "checkpoint.every_steps=1000"]]
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_step(proc, 1)
    proc.send_signal(signal.SIGINT)
    for line in proc.stderr:  # the handler's notice: the first Ctrl-C has been taken, the save follows
        if line.startswith("pretrain: SIGINT"):
            assert line == ("pretrain: SIGINT: saving a checkpoint after this step, then exiting "
                            "(Ctrl-C again: exit at once)\n")
            break
    time.sleep(1)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT, stderr[-3000:]
    assert time.monotonic() - t0 < 10  # not the 20 s the save would have taken


def test_workdir_remembers_its_config(tmp_path):
    """Resuming with an incompatible config is an error before anything in the workdir changes; keys
    that do not touch model, data or schedule (logging, checkpoint cadence) may change."""
    workdir = str(tmp_path)
    trainer.train(load_config("tiny_cpu", RUN_OVERRIDES + ["train.stop_after_steps=2", "checkpoint.every_steps=2"]),
                  workdir)
    before = {p: os.path.getmtime(os.path.join(dp, p)) for dp, _, fs in os.walk(workdir) for p in fs}
    for override, diff in [("model.width_multiplier=0.125", "model.width_multiplier: 0.0625 -> 0.125"),
                           ("data.seed=3", "data.seed: 0 -> 3"), ("train.total_steps=20", "train.total_steps: 10 -> 20")]:
        with pytest.raises(ValueError, match=re.escape(diff) + ".*--config " + re.escape(os.path.join(workdir, "config.json"))):
            trainer.train(load_config("tiny_cpu", RUN_OVERRIDES + [override]), workdir)
    after = {p: os.path.getmtime(os.path.join(dp, p)) for dp, _, fs in os.walk(workdir) for p in fs}
    assert after == before
    # Compatible: other logging and checkpoint cadence; and the run's own config.json resumes it.
    result = trainer.train(load_config("tiny_cpu", RUN_OVERRIDES + ["log.every_steps=5", "train.stop_after_steps=1"]),
                           workdir)
    assert (result.start_step, result.step) == (2, 3)
    result = trainer.train(load_config(os.path.join(workdir, "config.json"), ["train.stop_after_steps=0"]), workdir)
    assert result.step == TOTAL_STEPS


def test_workdir_remembers_its_config_fails_for_a_workdir_without_a_run(tmp_path):
    """No checkpoint yet: any config may start there (a run that never saved leaves nothing to resume)."""
    workdir = str(tmp_path)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(load_config("tiny_cpu", ["model.width_multiplier=0.125"]).to_dict(), f, default=list)
    result = trainer.train(load_config("tiny_cpu", RUN_OVERRIDES + ["train.stop_after_steps=1"]), workdir)
    assert result.step == 1
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model"]["width_multiplier"] == 0.0625  # written once the run started


def test_backbone_export_with_every_checkpoint(reference_run):
    """WORKDIR/backbone/: backbone-N (official layout) for each kept checkpoint, the newest named by the
    `checkpoint` file, model.json with the architecture; the export holds the trained backbone's weights."""
    from cvrl_fast import checkpoints, models

    workdir, result = reference_run
    bdir = os.path.join(workdir, "backbone")
    assert sorted(p for p in os.listdir(bdir) if p.endswith(".index")) == [
        "backbone-10.index", "backbone-4.index", "backbone-8.index"]  # max_to_keep 3, like the checkpoints
    assert tf.train.latest_checkpoint(bdir) == os.path.join(bdir, "backbone-10") == result.backbone_path
    with open(os.path.join(bdir, "model.json")) as f:
        spec = json.load(f)
    assert spec == {"depth": 18, "width_multiplier": 0.0625, "bn_momentum": 0.9, "bn_epsilon": 1e-5}
    bcfg = models.BackboneConfig(depth=spec["depth"], width_multiplier=spec["width_multiplier"])
    loaded = checkpoints.load_official_backbone(tf.train.latest_checkpoint(bdir), config=bcfg)
    for a, b in zip(loaded.weights, result.backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    keys = tf.train.load_checkpoint(os.path.join(bdir, "backbone-10")).get_variable_to_shape_map()
    assert all(k.startswith(("backbone/layer_with_weights-", "_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter"))
               for k in keys), sorted(keys)[:5]


def test_cli_output_is_quiet_and_readable(tmp_path):
    """The CLI's output in a log: a banner, plain progress lines, an end line; no TF start-up noise, no
    control characters."""
    proc = _start_cli(str(tmp_path), overrides=RUN_OVERRIDES + ["train.total_steps=2"])
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    for noise in ("InitializeLog", "cudart_stub", "cuInit", "oneDNN custom operations"):
        assert noise not in stderr, stderr
    assert "\r" not in stdout and "\x1b" not in stdout and "\b" not in stdout
    lines = stdout.splitlines()
    assert lines[0] == f"pretrain: {tmp_path} (new run)"
    assert lines[1].startswith("  data: synthetic videos (64 per epoch")
    assert [line.split(",")[0] for line in lines if line.startswith("pretrain: ") and "/2 steps" in line] == [
        "pretrain: 1/2 steps", "pretrain: 2/2 steps"]
    assert lines[-1].startswith("pretrain: done: step 2/2")


def test_tensorboard_reads_the_training_logs(reference_run):
    """The set-up installs TensorBoard (the README points to it), and its own reader finds every scalar."""
    from tensorboard.backend.event_processing import event_accumulator

    workdir, _ = reference_run
    acc = event_accumulator.EventAccumulator(os.path.join(workdir, "tensorboard"))
    acc.Reload()
    # Tensor summaries marked for the scalars plugin (the form tf.summary.scalar writes).
    tags = set(acc.Tags()["tensors"])
    assert {"loss", "learning_rate", "contrastive_accuracy", "clips_per_second"} <= tags
    assert all(acc.SummaryMetadata(t).plugin_data.plugin_name == "scalars" for t in tags)
    ours = read_scalars(workdir)["loss"]
    theirs = {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("loss")}
    assert theirs == pytest.approx(ours)
