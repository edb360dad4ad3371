"""The trainer with data.augment_on: the colour stage inside the train step (device) or in the loader (host).

Oracles: the train step's loss is the loss of the model on `device_augment` of the batch, computed outside
the step with the same weights (the tiny model is so sensitive at initialisation that a ±0.5/255 change of
the inputs moves the loss by ~0.1, so a step that skipped, or reordered, the colour stage is seen at once);
and a resumed device-mode run under a MirroredStrategy over two logical CPUs has the same weights, bit for
bit, as the uninterrupted one.
"""
import glob
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from cvrl_fast import data, device_augment, trainer  # noqa: E402
from cvrl_fast.configs import load_config  # noqa: E402
from cvrl_fast.losses import nt_xent_loss, weight_decay_loss  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["model.depth=18", "model.head_num_hidden_layers=1", "runtime.deterministic=true"]


def _clips():
    clips = sorted(glob.glob(os.path.join(ROOT, ".cache", "clips", "*.mp4")))
    assert len(clips) >= 4, "run scripts/fetch_clips.py first (make test does)"
    return clips


def test_resolve_augment_on():
    assert [trainer.resolve_augment_on("auto", d) for d in ("CPU", "GPU", "TPU")] == ["host", "device", "device"]
    assert trainer.resolve_augment_on("device", "CPU") == "device"
    assert trainer.resolve_augment_on("host", "TPU") == "host"
    assert load_config("tiny_cpu").data.augment_on == "auto"


def test_resolve_augment_on_fails():
    with pytest.raises(ValueError, match=r"data.augment_on='gpu': must be one of \('auto', 'host', 'device'\)"):
        trainer.resolve_augment_on("gpu", "GPU")
    with pytest.raises(ValueError, match="data.augment_on='accelerator'"):
        trainer.validate_config(load_config("tiny_cpu", ["data.augment_on=accelerator"]))


@pytest.fixture(scope="module")
def device_batch():
    cfg = load_config("tiny_cpu", SMALL)
    ds = data.pretrain_dataset(_clips(), batch_size=4, seed=0, config=trainer.augment_config(cfg), augment_on="device")
    return cfg, next(iter(ds))


def _step_and_expected(cfg, batch, jit_compile):
    strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    model, _ = trainer.build_model(cfg)
    opt, _ = trainer.build_optimizer(cfg, 10, 0)
    opt.build(model.trainable_variables)
    frames = {k: device_augment(batch[f"view{k}"], batch[f"colour{k}"]) for k in "12"}
    plain = {k: tf.cast(batch[f"view{k}"], tf.float32) / 255.0 for k in "12"}

    def loss_of(f):  # the step's loss with the weights before the update
        z1, z2 = tf.split(model(tf.concat([f["1"], f["2"]], 0), training=True), 2)
        return float(nt_xent_loss(z1, z2, cfg.train.temperature) +
                     weight_decay_loss(trainer.models.kernel_variables(model), cfg.train.weight_decay))

    expected, without_colour = loss_of(frames), loss_of(plain)
    step = trainer.make_train_step(model, opt, strategy, temperature=cfg.train.temperature,
                                   weight_decay=cfg.train.weight_decay, jit_compile=jit_compile)
    return float(step(batch)["loss"]), expected, without_colour


def test_train_step_applies_device_augment(device_batch):
    cfg, batch = device_batch
    got, expected, without_colour = _step_and_expected(cfg, batch, jit_compile=False)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert abs(got - without_colour) > 1e-2  # the colour stage changed what the model saw


@pytest.mark.slow  # XLA compiles the tiny R3D-18 step: ~40 s on 2 cores
def test_train_step_applies_device_augment_under_xla(device_batch):
    cfg, batch = device_batch
    got, expected, without_colour = _step_and_expected(cfg, batch, jit_compile=True)
    assert got == pytest.approx(expected, rel=1e-3)  # XLA's convolutions round differently
    assert abs(got - without_colour) > 1e-2


def test_train_step_applies_device_augment_fails(device_batch):
    """Swapping the two views' colour rows (each clip coloured with the other's draw) changes the loss:
    the oracle above sees a step that mixes up the parameters."""
    cfg, batch = device_batch
    swapped = dict(batch, colour1=batch["colour2"], colour2=batch["colour1"])
    got, _, _ = _step_and_expected(cfg, swapped, jit_compile=False)
    _, expected, _ = _step_and_expected(cfg, batch, jit_compile=False)
    assert abs(got - expected) > 1e-2


# A separate process: two logical CPUs must be configured before TensorFlow initialises.
_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from cvrl_fast import trainer
    from cvrl_fast.configs import load_config

    root, clips, engine = sys.argv[1], sys.argv[2], sys.argv[3]
    base = %r + ["runtime.strategy=mirrored", "data.augment_on=device", "data.sources=" + clips,
                 "train.total_steps=2", "checkpoint.every_steps=1", "data.engine=" + engine]
    full = trainer.train(load_config("tiny_cpu", base), os.path.join(root, "full"))
    part = trainer.train(load_config("tiny_cpu", base + ["train.stop_after_steps=1"]), os.path.join(root, "part"))
    rest = trainer.train(load_config("tiny_cpu", base), os.path.join(root, "part"))
    if engine == "graph":  # the same run through the loader engine and tf.distribute's distributed iterator
        trainer.train(load_config("tiny_cpu", base + ["data.engine=loader"]), os.path.join(root, "loader"))
    print(json.dumps({"full": full.step, "part": part.step, "rest": [rest.start_step, rest.step],
                      "loss": full.metrics["loss"]}))
""") % (SMALL,)


# graph (the trainer's default; its run is also compared with a loader-engine run): ~3.5 min on 2 cores
@pytest.mark.parametrize("engine", ["graph", pytest.param("loader", marks=pytest.mark.slow)])
def test_device_mode_under_mirrored_strategy_resumes_exactly(tmp_path, engine):
    """Also through the graph engine, whose host iterator (trainer.HostInput) is in the checkpoint and is
    restored; its run equals the loader engine's run, which reads through tf.distribute's distributed
    iterator (so HostInput gives each replica the batches that iterator gives it)."""
    proc = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT, str(tmp_path), ",".join(_clips()), engine],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["full"] == 2 and result["part"] == 1 and result["rest"] == [1, 2] and np.isfinite(result["loss"])
    assert "colour augmentation on the CPU replicas (data.augment_on=device)" in proc.stdout
    assert "2 CPU replica(s)" in proc.stdout
    readers = [tf.train.load_checkpoint(str(tmp_path / run / "checkpoints" / "ckpt-2")) for run in ("full", "part")]
    # Every saved tensor: under the mirrored strategy the trainable weights are saved through the optimizer's
    # variable list, beside its momenta, the BN statistics, the step and the loader position.
    keys = {k for k in readers[0].get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert keys == set(readers[1].get_variable_to_shape_map()) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
    iterator_keys = {k for k in keys if k.startswith("input_iterator/")}
    assert iterator_keys == ({"input_iterator/.ATTRIBUTES/ITERATOR_STATE"} if engine == "graph" else set())
    keys -= iterator_keys
    assert len(keys) > 150
    if engine == "graph":
        readers.append(tf.train.load_checkpoint(str(tmp_path / "loader" / "checkpoints" / "ckpt-2")))
        assert "; graph engine (data.engine=graph)" in proc.stdout
    for key in sorted(keys):
        for other in readers[1:]:
            np.testing.assert_array_equal(readers[0].get_tensor(key), other.get_tensor(key), err_msg=key)


def test_gpu_benchmark_script_runs(tmp_path):
    """benchmarks/gpu_augment_step.py is run on lent GPU machines as one command: keep it working (here on
    the CPU, tiny model, XLA off)."""
    proc = subprocess.run([sys.executable, "benchmarks/gpu_augment_step.py", "--tiny", "--no-xla", "--precision",
                           "float32", "--batch", "2", "--steps", "1", "--repeats", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[0])
    assert result["pairs_per_step"] == 2 and result["clip"] == "4x32x32" and not result["xla"]
    assert all(result[k] > 0 for k in ("device_augment_ms", "step_host_ms", "step_device_ms"))
