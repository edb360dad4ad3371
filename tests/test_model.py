"""R3D backbone, projection and linear heads (cvrl.md §3): parameter counts, shapes, TF 'SAME' padding."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from cvrl_fast import models  # noqa: E402

SPEC_STAGE_PARAMS = {"stem": 47_296, "res2": 218_624, "res3": 1_226_752, "res4": 10_002_432, "res5": 20_230_144}


def _size(w):
    return int(np.prod(w.shape))


@pytest.fixture(scope="module")
def r3d50():
    return models.build_backbone(num_frames=16, image_size=224)


def test_r3d50_param_count(r3d50):
    assert models.count_params(r3d50) == models.R3D50_NUM_PARAMS == 31_725_248
    trainable = sum(_size(w) for w in r3d50.trainable_weights)
    moving = sum(_size(w) for w in r3d50.non_trainable_weights)
    assert (trainable, moving) == (31_672_128, 53_120)
    by_stage = {}
    for w in r3d50.weights:
        stage = w.path.split("/")[0].split("_")[0]
        by_stage[stage] = by_stage.get(stage, 0) + _size(w)
    assert by_stage == SPEC_STAGE_PARAMS
    convs = [layer for layer in r3d50.layers if isinstance(layer, keras.layers.Conv3D)]
    assert len(convs) == 53
    assert all(not layer.use_bias for layer in convs)


def test_r3d50_res5_shape(r3d50):
    assert r3d50.output_shape == (None, 8, 7, 7, 2048)
    dynamic = models.build_backbone()  # T, H, W unknown until called
    assert models.count_params(dynamic) == 31_725_248
    assert dynamic.compute_output_shape((2, 32, 256, 256, 3)) == (2, 16, 8, 8, 2048)
    assert dynamic.compute_output_shape((2, 32, 224, 224, 3)) == (2, 16, 7, 7, 2048)


def test_bn_and_conv_settings(r3d50):
    bns = [layer for layer in r3d50.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 53
    for bn in bns:
        assert (bn.momentum, bn.epsilon, bn.synchronized) == (0.9, 1e-5, True), bn.name
        assert bn.gamma_initializer.__class__.__name__ == "Ones"
    stem = r3d50.get_layer("stem_conv")
    assert (stem.kernel_size, stem.strides, stem.padding) == ((5, 7, 7), (2, 2, 2), "same")
    assert isinstance(stem.kernel_initializer, keras.initializers.VarianceScaling)
    assert r3d50.get_layer("res4_block1_temporal_conv").kernel.shape == (3, 1, 1, 512, 256)
    assert r3d50.get_layer("res3_block1_temporal_conv").kernel.shape == (1, 1, 1, 256, 128)
    assert r3d50.get_layer("res5_block1_spatial_conv").strides == (1, 2, 2)
    assert r3d50.get_layer("res5_block1_temporal_conv").strides == (1, 1, 1)
    assert r3d50.get_layer("res2_block1_spatial_conv").strides == (1, 1, 1)


def test_pretrain_model_param_count(r3d50):
    model = models.build_pretrain_model(r3d50)
    assert models.count_params(model) == models.PRETRAIN_MODEL_NUM_PARAMS == 44_601_152
    head = model.get_layer("projection_head")
    assert models.count_params(head) == models.PROJECTION_HEAD_NUM_PARAMS == 12_875_904
    assert model.output_shape == (None, 128)
    assert [layer.momentum for layer in head.layers if isinstance(layer, keras.layers.BatchNormalization)] == [0.997] * 3
    # Weight decay applies to the 53 conv + 4 dense kernels only (cvrl.md §4).
    kernels = models.kernel_variables(model)
    assert len(kernels) == 57
    assert all(k.path.endswith("kernel") for k in kernels)


def _explicit_pad(x, pads):
    return tf.pad(x, [[0, 0], *pads, [0, 0]])


def test_same_padding_is_tf_same():
    """Keras 'same' must pad like TF 'SAME' (extra pad at the end), as the pads of docs/cvrl.md §3.1 say:
    stem (1,2) temporal / (2,3) spatial, max-pool (0,1), stride-2 3x3 conv (0,1)."""
    backbone = models.build_backbone(models.BackboneConfig(width_multiplier=0.125), num_frames=16, image_size=64)
    x = tf.random.stateless_uniform([1, 16, 64, 64, 3], seed=[1, 2])
    stem = backbone.get_layer("stem_conv")
    kernel = stem.kernel
    got = stem(x)
    want = tf.nn.conv3d(_explicit_pad(x, [(1, 2), (2, 3), (2, 3)]), kernel, [1, 2, 2, 2, 1], "VALID")
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    symmetric = tf.nn.conv3d(_explicit_pad(x, [(2, 2), (3, 3), (3, 3)])[:, :-1, :-1, :-1], kernel,
                             [1, 2, 2, 2, 1], "VALID")
    assert not np.allclose(got.numpy(), symmetric.numpy(), atol=1e-3)  # the test can tell the two apart

    y = tf.random.stateless_normal([1, 8, 32, 32, 8], seed=[3, 4])
    pooled = backbone.get_layer("stem_pool")(y)
    # Padded cells are -inf: they never win the max.
    padded = tf.pad(y, [[0, 0], [0, 0], [0, 1], [0, 1], [0, 0]], constant_values=-np.inf)
    want_pool = tf.nn.max_pool3d(padded, [1, 1, 3, 3, 1], [1, 1, 2, 2, 1], "VALID")
    np.testing.assert_array_equal(pooled.numpy(), want_pool.numpy())

    spatial = backbone.get_layer("res3_block1_spatial_conv")
    z = tf.random.stateless_normal([1, 8, 16, 16, spatial.kernel.shape[3]], seed=[5, 6])
    want_s = tf.nn.conv3d(_explicit_pad(z, [(0, 0), (0, 1), (0, 1)]), spatial.kernel, [1, 1, 2, 2, 1], "VALID")
    np.testing.assert_allclose(spatial(z).numpy(), want_s.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("depth,blocks,out_channels", [
    (18, (2, 2, 2, 2), 32), (34, (3, 4, 6, 3), 32), (101, (3, 4, 23, 3), 128), (152, (3, 8, 36, 3), 128)])
def test_other_depths(depth, blocks, out_channels):
    cfg = models.BackboneConfig(depth=depth, width_multiplier=0.0625)
    backbone = models.build_backbone(cfg, num_frames=4, image_size=64)
    assert backbone.output_shape == (None, 2, 2, 2, out_channels)
    for stage, n in zip(("res2", "res3", "res4", "res5"), blocks):
        names = {layer.name for layer in backbone.layers if layer.name.startswith(f"{stage}_block") and layer.name.endswith("_out")}
        assert len(names) == n, stage


def test_width_multiplier():
    # Every filter count scales (the paper's 2x/4x variants; a small factor keeps the test fast).
    backbone = models.build_backbone(models.BackboneConfig(width_multiplier=0.25), num_frames=16, image_size=224)
    assert backbone.output_shape == (None, 8, 7, 7, 512)
    assert backbone.get_layer("stem_conv").kernel.shape == (5, 7, 7, 3, 16)
    assert backbone.get_layer("res4_block1_temporal_conv").kernel.shape == (3, 1, 1, 128, 64)


def test_backbone_config_fails():
    with pytest.raises(ValueError, match="model.depth=42"):
        models.BackboneConfig(depth=42)
    with pytest.raises(ValueError, match="width_multiplier"):
        models.BackboneConfig(width_multiplier=0)


def test_forward_tiny_training_and_inference():
    backbone = models.build_backbone(models.BackboneConfig(width_multiplier=0.0625), num_frames=4, image_size=32)
    x = tf.random.stateless_uniform([2, 4, 32, 32, 3], seed=[7, 8])
    out = backbone(x, training=False)
    assert out.shape == (2, 2, 1, 1, 128)
    assert np.all(out.numpy() >= 0)  # ReLU output
    moving = backbone.get_layer("stem_bn").moving_mean.numpy().copy()
    backbone(x, training=True)
    # Keras momentum 0.9: moving <- 0.9 moving + 0.1 batch mean, so it moved by a tenth of the way.
    assert not np.allclose(backbone.get_layer("stem_bn").moving_mean.numpy(), moving)


def test_linear_classifier():
    backbone = models.build_backbone(models.BackboneConfig(width_multiplier=0.0625), num_frames=4, image_size=32)
    clf = models.build_linear_classifier(backbone, 7)
    assert [w.path for w in clf.trainable_weights] == ["classifier/kernel", "classifier/bias"]
    x = tf.random.stateless_uniform([3, 4, 32, 32, 3], seed=[9, 10])
    feats = tf.reduce_mean(backbone(x, training=False), axis=[1, 2, 3]).numpy()
    normed = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    dense = clf.get_layer("classifier")
    want = normed @ dense.kernel.numpy() + dense.bias.numpy()
    np.testing.assert_allclose(clf(x, training=False).numpy(), want, rtol=1e-5, atol=1e-6)


def test_linear_classifier_fails():
    backbone = models.build_backbone(models.BackboneConfig(width_multiplier=0.0625), num_frames=4, image_size=32)
    with pytest.raises(ValueError, match="num_classes=0"):
        models.build_linear_classifier(backbone, 0)


def test_zero_init_residual_starts_blocks_as_their_shortcut():
    """Non-reference knob: each block's last BN starts at gamma 0, nothing else changes."""
    for depth, last in ((50, "norm3"), (18, "norm2")):
        ref = models.build_backbone(models.BackboneConfig(depth=depth, width_multiplier=0.0625), num_frames=4,
                                    image_size=32)
        zi = models.build_backbone(models.BackboneConfig(depth=depth, width_multiplier=0.0625,
                                                         zero_init_residual=True), num_frames=4, image_size=32)
        assert [(w.path, w.shape) for w in ref.weights] == [(w.path, w.shape) for w in zi.weights]
        zeroed = {w.path for w in zi.weights if w.path.endswith("gamma") and not np.any(w.numpy())}
        expected = {w.path for w in zi.weights if w.path.endswith(f"{last}/gamma")}
        assert zeroed == expected and len(expected) == sum(models.BackboneConfig(depth=depth).blocks)
    # A block whose residual branch is switched off passes its shortcut through: res2_block2 (identity
    # shortcut) returns ReLU(input), and its input is already a ReLU output.
    x = tf.random.stateless_uniform([2, 4, 32, 32, 3], seed=[1, 2])
    inner = keras.Model(zi.input, [zi.get_layer("res2_block1_out").output, zi.get_layer("res2_block2_out").output])
    a, b = inner(x, training=False)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


def test_zero_init_residual_starts_blocks_as_their_shortcut_fails_by_default():
    """The reference initialisation (cvrl.md §3.1) keeps every gamma at 1: the residual branch is live."""
    x = tf.random.stateless_uniform([1, 4, 32, 32, 3], seed=[1, 2])
    ref = models.build_backbone(models.BackboneConfig(depth=18, width_multiplier=0.0625), num_frames=4, image_size=32)
    inner = keras.Model(ref.input, [ref.get_layer("res2_block1_out").output, ref.get_layer("res2_block2_out").output])
    a, b = inner(x, training=False)
    assert not np.allclose(a.numpy(), b.numpy(), atol=1e-3)
