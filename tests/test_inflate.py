"""The I3D inflation tool: a time-constant clip through the inflated R3D-50 gives the 2D network's features."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from cvrl_fast import inflate, models  # noqa: E402


@pytest.fixture(scope="module")
def random_resnet50(tmp_path_factory):
    """A Keras ResNet50 with random weights, including non-trivial biases and BN statistics, saved to disk."""
    keras.utils.set_random_seed(0)
    net = keras.applications.ResNet50(weights=None, include_top=False)
    rng = np.random.default_rng(0)
    for layer in net.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(rng.normal(0, 0.05, layer.bias.shape).astype(np.float32))
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.1, n).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0, 0.1, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
    path = str(tmp_path_factory.mktemp("rn50") / "resnet50.weights.h5")
    net.save_weights(path)
    return net, path


def _forward_2d_v15(net, images):
    """ResNet-50 v1.5 in 2D (stride on the 3x3, TF 'SAME' padding) carrying `net`'s weights: the oracle."""
    def conv_bn(x, name, stride, relu):
        conv, bn = net.get_layer(name + "_conv"), net.get_layer(name + "_bn")
        y = tf.nn.conv2d(x, conv.kernel, strides=stride, padding="SAME") + conv.bias
        y = tf.nn.batch_normalization(y, bn.moving_mean, bn.moving_variance, bn.beta, bn.gamma, bn.epsilon)
        return tf.nn.relu(y) if relu else y

    x = conv_bn(images, "conv1", 2, True)
    x = tf.nn.max_pool2d(x, 3, 2, "SAME")
    for stage, blocks in zip((2, 3, 4, 5), (3, 4, 6, 3)):
        for j in range(1, blocks + 1):
            name = f"conv{stage}_block{j}"
            stride = 2 if (j == 1 and stage > 2) else 1
            shortcut = conv_bn(x, name + "_0", stride, False) if j == 1 else x
            y = conv_bn(x, name + "_1", 1, True)
            y = conv_bn(y, name + "_2", stride, True)
            y = conv_bn(y, name + "_3", 1, False)
            x = tf.nn.relu(y + shortcut)
    return x


def test_inflated_backbone_matches_2d_network_on_constant_clip(random_resnet50):
    net, path = random_resnet50
    backbone = inflate.inflate_resnet50(inflate.load_keras_resnet50(path))
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
    num_frames = 64
    clip = np.repeat(image[:, None], num_frames, axis=1)          # constant in time
    features_3d = backbone(clip, training=False).numpy()          # [1, 32, 2, 2, 2048]
    features_2d = _forward_2d_v15(net, image).numpy()             # [1, 2, 2, 2048]
    assert features_3d.shape == (1, num_frames // 2, 2, 2, 2048)
    scale = np.abs(features_2d).max()
    err = np.abs(features_3d[0] - features_2d[0][None]).max(axis=(1, 2, 3)) / scale
    # Zero padding in time reaches inward one step per temporal conv (stem + 9 kT=3 convs), so the
    # middle of the 32 output steps sees no padding at all and must match the 2D network exactly.
    assert err[12:20].max() < 1e-4, err
    # ... while the borders do differ (the check would be vacuous if nothing depended on time).
    assert err[0] > 1e-3


def test_inflate_kernel_rule():
    k = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype(np.float32)
    k3 = inflate.inflate_kernel(k, 5)
    assert k3.shape == (5, 3, 3, 4, 5)
    np.testing.assert_allclose(k3.sum(axis=0), k, rtol=1e-6)
    np.testing.assert_allclose(k3[2], k / 5, rtol=1e-6)


def test_inflate_kernel_fails():
    with pytest.raises(ValueError, match="expected a 4-D 2D kernel"):
        inflate.inflate_kernel(np.zeros((3, 3, 4)), 3)


def test_load_keras_resnet50_fails(tmp_path):
    bad = tmp_path / "not_resnet.weights.h5"
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    small.save_weights(str(bad))
    with pytest.raises(ValueError, match="not a Keras ResNet50 weights file"):
        inflate.load_keras_resnet50(str(bad))


def test_layer_pairs_cover_every_backbone_weight():
    pairs = inflate.layer_pairs()
    assert len(pairs) == 53  # the 53 conv kernels of docs/cvrl.md §3.1, each with its BN
    backbone = models.build_backbone()
    mapped = {p[2] for p in pairs} | {p[3] for p in pairs}
    weighted = {l.name for l in backbone.layers if l.weights}
    assert mapped == weighted


def test_layer_pairs_fails():
    with pytest.raises(ValueError, match="inflation needs depth 50"):
        inflate.layer_pairs(models.BackboneConfig(depth=101))


def test_cli_inflate_writes_official_layout(random_resnet50, tmp_path):
    from cvrl_fast import checkpoints, cli

    net, path = random_resnet50
    out = str(tmp_path / "imagenet_backbone")
    assert cli.main(["inflate", "--resnet50-weights", path, "--out", out]) == 0
    tensors = checkpoints.read_backbone_tensors(tf.train.latest_checkpoint(str(tmp_path)) or out)
    assert len(tensors) == 265
    stem = tensors["layer_with_weights-0/kernel"]
    np.testing.assert_allclose(stem.sum(axis=0), np.asarray(net.get_layer("conv1_conv").kernel), rtol=1e-5, atol=1e-6)
