"""Official CVRL backbone checkpoints (cvrl.md §8): explicit key map, both prefixes, round trip, strict checks."""
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from cvrl_fast import checkpoints, models, trainer  # noqa: E402

# The 265 variable keys and shapes of the released R3D-50 backbones, kept in the repository (cvrl.md §8).
MANIFEST = os.path.join(os.path.dirname(__file__), "data", "cvrl_r3d50_checkpoint_keys.tsv")
SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
TINY = models.BackboneConfig(width_multiplier=0.0625)


def read_manifest():
    out = {}
    with open(MANIFEST) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            key, shape = line.rstrip("\n").split("\t")
            out[key] = tuple(int(d) for d in shape.split("x"))
    return out


@pytest.fixture(scope="module")
def manifest():
    keys = read_manifest()
    assert len(keys) == 265
    return keys


def expected_layer(rel_key):
    """Independent statement of cvrl.md §8's index table: 0 stem conv, 1 stem BN, 2-4 res2, 5-8 res3,
    9-14 res4, 15-17 res5; attribute `_normK`/`_xxx_conv` -> our `{block}_normK`/`{block}_xxx_conv`."""
    parts = rel_key.split("/")
    index = int(parts[0].split("-")[1])
    if index == 0:
        return "stem_conv", parts[1]
    if index == 1:
        return "stem_bn", parts[1]
    starts = {"res2": 2, "res3": 5, "res4": 9, "res5": 15}
    stage = max((s for s in starts if starts[s] <= index), key=lambda s: starts[s])
    return f"{stage}_block{index - starts[stage] + 1}{parts[1]}", parts[2]


def write_raw(tensors, prefix):
    """Name-based writer (tf.raw_ops.SaveV2): an oracle independent of cvrl_fast's object-graph writer."""
    names = list(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[k]) for k in names])
    return prefix


def random_tensors(manifest, root="backbone/", seed=0):
    rng = np.random.default_rng(seed)
    return {root + key[len("backbone/"):]: rng.standard_normal(shape).astype(np.float32)
            for key, shape in manifest.items()}


def tiny_manifest(manifest):
    """The manifest's keys with the shapes of the width-1/16 R3D-50 (fast error-path tests)."""
    variables = model_vars(models.build_backbone(TINY))
    return {key: tuple(variables[expected_layer(key[len("backbone/"):-len(SUFFIX)])].shape) for key in manifest}


def model_vars(backbone):
    return {(layer.name, w.name): w for layer in backbone.layers for w in layer.weights}


def test_key_map_matches_manifest(manifest):
    mapping = checkpoints.key_map()
    assert len(manifest) == 265 and sum(int(np.prod(s)) for s in manifest.values()) == 31_725_248
    assert {f"backbone/{k}{SUFFIX}" for k in mapping} == set(manifest)
    backbone = models.build_backbone()
    variables = model_vars(backbone)
    for rel, target in mapping.items():
        assert target == expected_layer(rel), rel
        assert tuple(variables[target].shape) == manifest[f"backbone/{rel}{SUFFIX}"], rel
    assert set(mapping.values()) == set(variables)  # every model weight has exactly one key


def test_key_map_covers_basic_block_depths(tmp_path):
    """R3D-18/34 use the same layout without _expand_conv/_norm3; a save/load round trip is exact."""
    for depth in (18, 34):
        cfg = models.BackboneConfig(depth=depth, width_multiplier=0.0625, bn_synchronized=False)
        backbone = models.build_backbone(cfg)
        mapping = checkpoints.key_map(config=cfg)
        assert set(mapping.values()) == set(model_vars(backbone))  # every weight exactly once
        assert not any("_expand_conv" in k or "_norm3" in k for k in mapping)
        rng = np.random.default_rng(depth)
        for w in backbone.weights:
            w.assign(rng.standard_normal(w.shape).astype(np.float32))
        prefix = checkpoints.save_official_backbone(backbone, str(tmp_path / f"r3d{depth}" / "backbone"))
        loaded = checkpoints.load_official_backbone(prefix, config=cfg)
        for a, b in zip(backbone.weights, loaded.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_key_map_covers_basic_block_depths_fails(tmp_path):
    """An R3D-18 checkpoint does not load into an R3D-50 (or the reverse): the error names the key."""
    cfg18 = models.BackboneConfig(depth=18, width_multiplier=0.0625, bn_synchronized=False)
    prefix = checkpoints.save_official_backbone(models.build_backbone(cfg18), str(tmp_path / "r3d18" / "backbone"))
    with pytest.raises(ValueError, match="layer_with_weights"):
        checkpoints.load_official_backbone(prefix, config=models.BackboneConfig(width_multiplier=0.0625))


@pytest.fixture(scope="module")
def official_checkpoint(manifest, tmp_path_factory):
    tensors = random_tensors(manifest)
    prefix = write_raw(tensors, str(tmp_path_factory.mktemp("official") / "r3d_1x_k600_800ep_backbone-1"))
    return prefix, tensors


@pytest.fixture(scope="module")
def loaded_backbone(official_checkpoint):
    return trainer.load_official_backbone(official_checkpoint[0])


def test_load_official_backbone(official_checkpoint, loaded_backbone):
    prefix, tensors = official_checkpoint
    backbone = loaded_backbone
    variables = model_vars(backbone)
    for key, value in tensors.items():
        target = expected_layer(key[len("backbone/"):-len(SUFFIX)])
        np.testing.assert_array_equal(variables[target].numpy(), value, err_msg=key)
    # The loaded model gives the res5 map on [0, 1] input, in inference mode (moving statistics; the random
    # "variances" here may be negative, so only the shape is meaningful).
    out = backbone(tf.zeros([1, 4, 64, 64, 3]), training=False)
    assert out.shape == (1, 2, 2, 2, 2048)


def test_save_load_round_trip(official_checkpoint, loaded_backbone, manifest, tmp_path):
    prefix, tensors = official_checkpoint
    backbone = loaded_backbone
    out = trainer.save_official_backbone(backbone, str(tmp_path / "exported"))
    reader = tf.train.load_checkpoint(out)
    shapes = reader.get_variable_to_shape_map()
    assert set(shapes) - {"_CHECKPOINTABLE_OBJECT_GRAPH"} == set(manifest)  # exactly the 265 keys
    for key, value in tensors.items():
        assert tuple(shapes[key]) == manifest[key]
        np.testing.assert_array_equal(reader.get_tensor(key), value, err_msg=key)
    again = trainer.load_official_backbone(out)
    for a, b in zip(again.weights, backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The object graph has the reference's edge names, so an object-based restore finds the variables.
    root = tf.train.Checkpoint()
    status = root.read(out)
    status.expect_partial()


def test_load_from_full_training_checkpoint(manifest, tmp_path):
    """A reference training checkpoint: backbone under model/layer_with_weights-0/, head under
    model/layer_with_weights-1..7, momentum slots, optimizer counters and global_step."""
    tensors = random_tensors(tiny_manifest(manifest), root="model/layer_with_weights-0/", seed=1)
    extra = {"global_step/.ATTRIBUTES/VARIABLE_VALUE": np.int64(7),
             "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE": np.int64(7),
             "model/layer_with_weights-1/kernel/.ATTRIBUTES/VARIABLE_VALUE": np.ones([128, 64], np.float32),
             "model/layer_with_weights-1/bias/.ATTRIBUTES/VARIABLE_VALUE": np.ones([64], np.float32)}
    slot = "model/layer_with_weights-0/layer_with_weights-0/kernel/.OPTIMIZER_SLOT/optimizer/momentum" + SUFFIX
    extra[slot] = np.zeros_like(tensors["model/layer_with_weights-0/layer_with_weights-0/kernel" + SUFFIX])
    prefix = write_raw({**tensors, **extra}, str(tmp_path / "ckpt-7"))
    backbone = trainer.load_official_backbone(prefix, models.build_backbone(TINY), TINY)
    variables = model_vars(backbone)
    for key, value in tensors.items():
        rel = key[len("model/layer_with_weights-0/"):-len(SUFFIX)]
        np.testing.assert_array_equal(variables[expected_layer(rel)].numpy(), value, err_msg=key)
    # A directory resolves to its latest checkpoint.
    with open(tmp_path / "checkpoint", "w") as f:
        f.write('model_checkpoint_path: "ckpt-7"\n')
    checkpoints.load_official_backbone(str(tmp_path), models.build_backbone(TINY), TINY)


@pytest.fixture(scope="module")
def tiny_tensors(manifest):
    return random_tensors(tiny_manifest(manifest), seed=2)


def test_load_official_backbone_fails_missing_key(tiny_tensors, tmp_path):
    key = "backbone/layer_with_weights-12/_norm2/moving_mean" + SUFFIX
    prefix = write_raw({k: v for k, v in tiny_tensors.items() if k != key}, str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="lacks 1 backbone variable.*layer_with_weights-12/_norm2/moving_mean"):
        checkpoints.load_official_backbone(prefix, models.build_backbone(TINY), TINY)


def test_load_official_backbone_fails_extra_key(tiny_tensors, tmp_path):
    extra = {"backbone/layer_with_weights-3/_shortcut_conv/kernel" + SUFFIX: np.zeros([1, 1, 1, 16, 16], np.float32)}
    prefix = write_raw({**tiny_tensors, **extra}, str(tmp_path / "extra"))
    with pytest.raises(ValueError, match="unexpected backbone variable.*layer_with_weights-3/_shortcut_conv/kernel"):
        checkpoints.load_official_backbone(prefix, models.build_backbone(TINY), TINY)


def test_load_official_backbone_fails_wrong_shape(tiny_tensors, tmp_path):
    key = "backbone/layer_with_weights-9/_temporal_conv/kernel" + SUFFIX
    bad = dict(tiny_tensors)
    bad[key] = np.zeros([1, 1, 1, 32, 16], np.float32)  # kT must be 3 in res4
    prefix = write_raw(bad, str(tmp_path / "shape"))
    with pytest.raises(ValueError, match="layer_with_weights-9/_temporal_conv/kernel.*shape \\[1, 1, 1, 32, 16\\]"):
        checkpoints.load_official_backbone(prefix, models.build_backbone(TINY), TINY)


def test_load_official_backbone_fails_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.index"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk"):
        checkpoints.load_official_backbone(str(tmp_path / "junk"), models.build_backbone(TINY), TINY)
    with pytest.raises(ValueError, match="holds no TF checkpoint"):
        checkpoints.load_official_backbone(str(tmp_path), models.build_backbone(TINY), TINY)
    prefix = write_raw({"other/x" + SUFFIX: np.zeros([2], np.float32)}, str(tmp_path / "other"))
    with pytest.raises(ValueError, match="no backbone variables"):
        checkpoints.load_official_backbone(prefix, models.build_backbone(TINY), TINY)
