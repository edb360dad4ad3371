"""NT-Xent (cvrl.md §4) against a NumPy reference, the differentiable cross-replica gather, weight decay."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from cvrl_fast import losses, models  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def numpy_nt_xent(z1, z2, temperature):
    """Spec §4 written out literally: per anchor, positive over (N cross-view + N-1 same-view) candidates."""
    z1 = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    z2 = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
    n = len(z1)

    def direction(a, b):
        total = 0.0
        for i in range(n):
            pos = np.exp(a[i] @ b[i] / temperature)
            denom = sum(np.exp(a[i] @ b[j] / temperature) for j in range(n))
            denom += sum(np.exp(a[i] @ a[j] / temperature) for j in range(n) if j != i)
            total += -np.log(pos / denom)
        return total / n

    return direction(z1, z2) + direction(z2, z1)


@pytest.mark.parametrize("n,dim,temperature", [(8, 16, 0.1), (5, 3, 0.5), (1, 4, 0.1)])
def test_nt_xent_matches_numpy(n, dim, temperature):
    rng = np.random.default_rng(n)
    z1 = rng.standard_normal((n, dim))
    z2 = z1 + 0.5 * rng.standard_normal((n, dim))
    got = float(losses.nt_xent_loss(tf.constant(z1, tf.float32), tf.constant(z2, tf.float32), temperature))
    np.testing.assert_allclose(got, numpy_nt_xent(z1, z2, temperature), rtol=1e-5)


def test_nt_xent_uninformative_value():
    """All embeddings equal: every candidate logit is the same, so each direction is ln(2N-1)."""
    n = 1024
    z = tf.ones([n, 128])
    got = float(losses.nt_xent_loss(z, z, 0.1))
    np.testing.assert_allclose(got, 2 * np.log(2 * n - 1), rtol=1e-5)
    assert abs(got - 15.25) < 0.01  # "about 15.2 at N = 1024" (docs/cvrl.md §4)


def test_nt_xent_metrics():
    z1 = tf.eye(6, 8)  # distinct orthonormal rows: the positive is always the argmax
    loss, metrics = losses.nt_xent_loss(z1, z1, 0.1, return_metrics=True)
    assert float(metrics["contrastive_accuracy"]) == 1.0
    logits = (np.eye(6, 8) @ np.eye(6, 8).T) / 0.1
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(float(metrics["contrastive_entropy"]), np.mean(-(p * np.log(p + 1e-8)).sum(1)), rtol=1e-4)
    shuffled = tf.gather(z1, [1, 0, 3, 2, 5, 4])
    _, metrics = losses.nt_xent_loss(z1, shuffled, 0.1, return_metrics=True)
    assert float(metrics["contrastive_accuracy"]) == 0.0


def test_nt_xent_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    z1 = tf.constant(rng.standard_normal((4, 5)))
    z2 = tf.constant(rng.standard_normal((4, 5)))
    theoretical, numerical = tf.test.compute_gradient(lambda a: losses.nt_xent_loss(a, z2, 0.2), [tf.cast(z1, tf.float32)], delta=1e-2)
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=2e-2, atol=2e-3)


def test_nt_xent_fails():
    z = tf.ones([4, 8])
    with pytest.raises(ValueError, match="temperature=0"):
        losses.nt_xent_loss(z, z, 0)
    with pytest.raises(ValueError, match="must be \\[batch, dim\\]"):
        losses.nt_xent_loss(tf.ones([4]), tf.ones([4]))


def test_weight_decay_loss():
    backbone = models.build_backbone(models.BackboneConfig(width_multiplier=0.0625), num_frames=4, image_size=32)
    model = models.build_pretrain_model(backbone, models.HeadConfig(hidden_dim=16, output_dim=8))
    kernels = models.kernel_variables(model)
    assert len(kernels) == 57
    want = 1e-6 * sum(float(np.sum(k.numpy() ** 2)) for k in kernels) / 2
    np.testing.assert_allclose(float(losses.weight_decay_loss(kernels, 1e-6)), want, rtol=1e-5)
    excluded = {w.path for w in model.weights} - {k.path for k in kernels}
    assert excluded and all(p.rsplit("/", 1)[1] in ("gamma", "beta", "moving_mean", "moving_variance", "bias") for p in excluded)


def test_weight_decay_loss_fails():
    with pytest.raises(ValueError, match="weight_decay=-1"):
        losses.weight_decay_loss([tf.Variable([1.0])], -1)


def test_all_gather_fails_in_cross_replica_context():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope(), pytest.raises(RuntimeError, match="cross-replica context"):
        losses.all_gather_with_grad(tf.ones([2, 3]))


# A separate process: logical devices must be configured before TensorFlow initialises. R3D-18 at width
# 1/16 keeps the sync-BN graph small (tracing a MirroredStrategy step costs ~0.1 s per all-reduce on CPU).
_TWO_REPLICA_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from cvrl_fast import losses, trainer
    from cvrl_fast.configs import load_config

    cfg = load_config("tiny_cpu", ["model.depth=18", "model.head_num_hidden_layers=1",
                                   "train.base_learning_rate=200.0", "train.warmup_epochs=0"])
    keras.utils.set_random_seed(0)
    n = cfg.train.global_batch_size
    batch = next(iter(trainer.synthetic_pretrain_dataset(per_replica_batch=n, global_batch=n, num_frames=4,
                                                          image_size=32, seed=0, start_step=0)))

    def run(strategy, init_weights):
        with strategy.scope():
            model, _ = trainer.build_model(cfg)
            if init_weights is not None:
                model.set_weights(init_weights)
            opt, schedule = trainer.build_optimizer(cfg, 10, 0)
            opt.build(model.trainable_variables)
        w0 = [w.numpy() for w in model.weights]
        step = trainer.make_train_step(model, opt, strategy, temperature=0.1, weight_decay=1e-6)
        dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch).unbatch().batch(n))
        loss = float(step(next(iter(dist)))["loss"])
        lr = float(schedule(0))
        w1 = [w.numpy() for w in model.weights]
        # First SGD-momentum step: w1 = w0 - lr * g, so the applied gradient is (w0 - w1) / lr.
        grads = [(a - b) / lr for a, b, w in zip(w0, w1, model.weights) if w.trainable]
        stats = [b for b, w in zip(w1, model.weights) if not w.trainable]  # BN moving statistics
        return [w.numpy() for w in model.weights] if init_weights is None else None, w0, loss, grads, stats

    def max_rel(xs, ys):
        # Relative to the largest entry over all tensors: some gradients are ~0 by construction (a Dense bias
        # followed by BN), and a per-tensor ratio would only measure rounding noise there.
        scale = max(float(np.abs(x).max()) for x in xs) + 1e-12
        return max(float(np.abs(x - y).max()) for x, y in zip(xs, ys)) / scale

    one = tf.distribute.get_strategy()
    two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert two.num_replicas_in_sync == 2
    _, w0, loss1, g1, s1 = run(one, None)
    _, _, loss2, g2, s2 = run(two, w0)
    out = {"loss": [loss1, loss2], "grad_max_rel": max_rel(g1, g2), "stats_max_rel": max_rel(s1, s2),
           "grad_max": max(float(np.abs(g).max()) for g in g1)}
    exact_gather = losses.all_gather_with_grad

    def local_only_gather(x):
        # The reference's pitfall: other replicas' rows arrive as constants, only the local rows carry grads.
        r = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int32)
        b = tf.shape(x)[0]
        g = tf.stop_gradient(exact_gather(x))
        return tf.concat([g[:r * b], x, g[(r + 1) * b:]], axis=0)

    losses.all_gather_with_grad = local_only_gather
    _, _, loss3, g3, _ = run(two, w0)
    out["constant_gather_loss"] = loss3
    out["constant_gather_grad_max_rel"] = max_rel(g1, g3)
    print("RESULT " + json.dumps(out))
""")


def test_two_replica_step_equals_one_replica():
    """Spec §5: 2 replicas x N/2 videos (sync BN, gathered negatives) = 1 replica x N, gradients included."""
    proc = subprocess.run([sys.executable, "-c", _TWO_REPLICA_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=400)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    np.testing.assert_allclose(out["loss"][1], out["loss"][0], rtol=1e-5)
    assert out["grad_max"] > 1e-4, out  # the gradients are not trivially zero
    assert out["grad_max_rel"] < 1e-3, out
    assert out["stats_max_rel"] < 1e-5, out  # sync BN: same moving statistics as one device
    # Control: with a gather that blocks gradients the loss is the same but the gradients are not.
    np.testing.assert_allclose(out["constant_gather_loss"], out["loss"][0], rtol=1e-5)
    assert out["constant_gather_grad_max_rel"] > 1e-2, out
