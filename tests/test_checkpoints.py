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


# ------------------------------------------------------------------------------------------------
# --backbone resolution (checkpoints.resolve_backbone / load_backbone): pretrain workdir, training
# checkpoint, official backbone; depth and width from the run.
# ------------------------------------------------------------------------------------------------
def write_pretrain_workdir(root, *, depth=18, width=0.0625, steps=(1, 2), backbone_dir=True, seed=0):
    """The pretrain workdir layout the trainer writes, built here by hand with TF's own writers (the
    oracle for the resolver): config.json, checkpoints/ckpt-N by tf.train.CheckpointManager of
    Checkpoint(model, optimizer, global_step, loader_state), and (backbone_dir) backbone/backbone-N by
    save_official_backbone, backbone/checkpoint by tf.compat.v1.train.update_checkpoint_state and
    backbone/model.json. Each step scales the weights, so checkpoints of different steps differ.

    Returns (root, {(layer, variable): value} of the backbone at the last step).
    """
    import json

    import keras

    from cvrl_fast.configs import load_config

    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    cfg = load_config("tiny_cpu", [f"model.depth={depth}", f"model.width_multiplier={width}",
                                   "model.head_num_hidden_layers=1", "model.head_hidden_dim=16",
                                   "model.head_output_dim=8"])
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump(cfg.to_dict(), f, indent=1, default=list)
    keras.utils.set_random_seed(seed)
    model, backbone = trainer.build_model(cfg)
    optimizer, _ = trainer.build_optimizer(cfg, 10, 1)
    optimizer.build(model.trainable_variables)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
    loader_state = tf.Variable("", dtype=tf.string, trainable=False)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model, optimizer=optimizer, global_step=global_step, loader_state=loader_state),
        os.path.join(root, "checkpoints"), max_to_keep=3)
    bcfg = models.BackboneConfig(depth=depth, width_multiplier=width)
    written = []
    for step in steps:
        for w in backbone.trainable_weights:
            w.assign(w * (1.0 + 0.01 * step))
        global_step.assign(step)
        manager.save(checkpoint_number=step)
        if backbone_dir:
            bdir = os.path.join(root, "backbone")
            checkpoints.save_official_backbone(backbone, os.path.join(bdir, f"backbone-{step}"), config=bcfg)
            written.append(os.path.join(bdir, f"backbone-{step}"))
            tf.compat.v1.train.update_checkpoint_state(bdir, written[-1], all_model_checkpoint_paths=written)
            with open(os.path.join(bdir, "model.json"), "w") as f:
                json.dump({"depth": depth, "width_multiplier": width, "bn_momentum": 0.9, "bn_epsilon": 1e-5}, f)
    return root, {k: v.numpy() for k, v in model_vars(backbone).items()}


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory):
    return write_pretrain_workdir(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def checkpoints_only_run(tmp_path_factory):
    """A run whose trainer wrote no backbone/ (only config.json and checkpoints/)."""
    return write_pretrain_workdir(tmp_path_factory.mktemp("run_ckpt") / "run", backbone_dir=False, seed=1)


def assert_same_weights(backbone, expected):
    got = model_vars(backbone)
    assert set(got) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key].numpy(), value, err_msg=str(key))


def test_resolve_backbone_every_form_of_a_run(pretrain_run, tmp_path):
    root, weights = pretrain_run
    newest = os.path.join(root, "backbone", "backbone-2")
    for given in (root, root + "/", os.path.join(root, "backbone"), os.path.join(root, "checkpoints"),
                  os.path.join(root, "checkpoints", "ckpt-2"), os.path.join(root, "checkpoints", "ckpt-2.index"),
                  newest, newest + ".index"):
        prefix, cfg = checkpoints.resolve_backbone(given)
        assert prefix == newest, given
        assert (cfg.depth, cfg.width_multiplier, cfg.bn_momentum, cfg.bn_epsilon) == (18, 0.0625, 0.9, 1e-5), given
    # An older training checkpoint leads to the backbone of the same step.
    assert checkpoints.resolve_backbone(os.path.join(root, "checkpoints", "ckpt-1"))[0] == \
        os.path.join(root, "backbone", "backbone-1")
    backbone, resolved = checkpoints.load_backbone(root)
    assert resolved.kind == "official" and resolved.source.endswith("model.json")
    assert_same_weights(backbone, weights)
    # The loaded backbone takes any clip shape (the run's was 4x32x32).
    assert backbone(tf.zeros([1, 8, 64, 48, 3]), training=False).shape == (1, 4, 2, 2, 32)
    # A copy of the run resolves inside the copy, although the state files name the original's absolute paths.
    # Its backbone/ without model.json: the model section of the run's config.json.
    import shutil

    shutil.copytree(root, tmp_path / "run")
    (tmp_path / "run" / "backbone" / "model.json").unlink()
    resolved = checkpoints.resolve_backbone_details(str(tmp_path / "run"))
    assert resolved.prefix == str(tmp_path / "run" / "backbone" / "backbone-2")
    assert resolved.source == str(tmp_path / "run" / "config.json") and resolved.config.depth == 18


def test_resolve_backbone_every_form_of_a_run_fails(pretrain_run, tmp_path):
    root, _ = pretrain_run
    with pytest.raises(FileNotFoundError, match=r"nope: no such file or directory.*--backbone accepts: a pretrain "
                                                r"workdir"):
        checkpoints.resolve_backbone(str(tmp_path / "nope"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"notes.txt: not a TF checkpoint.*--backbone accepts"):
        checkpoints.resolve_backbone(str(tmp_path / "notes.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: directory holds no TF checkpoint.*--backbone accepts"):
        checkpoints.resolve_backbone(str(tmp_path / "empty"))
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="fresh: a pretrain workdir without a checkpoint yet"):
        checkpoints.resolve_backbone(str(tmp_path / "fresh"))
    junk = tmp_path / "junk.index"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk: not a readable TF checkpoint"):
        checkpoints.resolve_backbone(str(tmp_path / "junk"))
    # Explicit depth/width that contradict the run: an error naming both values.
    with pytest.raises(ValueError, match=r"model.depth=50 contradicts the backbone .*it has model.depth=18 "
                                         r"\(from .*model.json\)"):
        checkpoints.load_backbone(root, depth=50)
    with pytest.raises(ValueError, match=r"model.width_multiplier=1 contradicts .*model.width_multiplier=0.0625"):
        checkpoints.load_backbone(root, width_multiplier=1.0)


def test_load_backbone_from_training_checkpoint(checkpoints_only_run):
    """No backbone/: the backbone is restored from the Keras 3 training checkpoint via config.json."""
    root, weights = checkpoints_only_run
    for given in (root, os.path.join(root, "checkpoints"), os.path.join(root, "checkpoints", "ckpt-2")):
        prefix, cfg = checkpoints.resolve_backbone(given)
        assert prefix == os.path.join(root, "checkpoints", "ckpt-2") and (cfg.depth, cfg.width_multiplier) == (18, 0.0625)
    backbone, resolved = checkpoints.load_backbone(os.path.join(root, "checkpoints", "ckpt-2"), depth=18)
    assert resolved.kind == "training"
    assert_same_weights(backbone, weights)
    older, _ = checkpoints.load_backbone(os.path.join(root, "checkpoints", "ckpt-1"))
    assert not np.array_equal(model_vars(older)[("stem_conv", "kernel")].numpy(), weights[("stem_conv", "kernel")])


def test_load_backbone_from_training_checkpoint_fails(checkpoints_only_run, tmp_path):
    import json
    import shutil

    root, _ = checkpoints_only_run
    copy = tmp_path / "run"
    shutil.copytree(root, copy)
    config = json.loads((copy / "config.json").read_text())
    config["model"]["width_multiplier"] = 0.125  # not the run that wrote the checkpoint
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"ckpt-2: the model rebuilt from .*config.json does not match this "
                                         r"training checkpoint"):
        checkpoints.load_backbone(str(copy))
    (copy / "config.json").unlink()
    with pytest.raises(ValueError, match=r"ckpt-2: a cvrl_fast training checkpoint, but the run's .*config.json"):
        checkpoints.resolve_backbone(str(copy / "checkpoints" / "ckpt-2"))


def _shapes_of(cfg):
    variables = model_vars(models.build_backbone(cfg))
    return {key: tuple(variables[target].shape) for key, target in checkpoints.key_map(config=cfg).items()}


def test_infer_backbone_config_from_tensors(manifest, tmp_path):
    # The released R3D-50 1x, from the key/shape list kept in the repository (no model built).
    shapes = {k[len("backbone/"):-len(SUFFIX)]: s for k, s in manifest.items()}
    cfg = checkpoints.infer_backbone_config(shapes)
    assert (cfg.depth, cfg.width_multiplier) == (50, 1.0)
    for depth, width in ((18, 0.0625), (34, 0.0625), (50, 0.3)):
        cfg = checkpoints.infer_backbone_config(_shapes_of(models.BackboneConfig(depth=depth, width_multiplier=width)))
        built = models.BackboneConfig(depth=depth, width_multiplier=width)
        assert cfg.depth == depth
        # Width 0.3 is not recoverable exactly (19.2 channels round to 19); every layer's width must match.
        assert [cfg.filters(c) for c in (64, 128, 256, 512)] == [built.filters(c) for c in (64, 128, 256, 512)]
    # An official prefix without model.json: resolved from its tensors, then loaded.
    tiny = models.BackboneConfig(depth=18, width_multiplier=0.0625, bn_synchronized=False)
    prefix = checkpoints.save_official_backbone(models.build_backbone(tiny), str(tmp_path / "r3d18_backbone-1"))
    _, cfg = checkpoints.resolve_backbone(prefix)
    assert (cfg.depth, cfg.width_multiplier) == (18, 0.0625)
    backbone, resolved = checkpoints.load_backbone(prefix)
    assert resolved.source.startswith("the tensor shapes")


def test_infer_backbone_config_from_tensors_fails():
    shapes = _shapes_of(models.BackboneConfig(depth=18, width_multiplier=0.0625))
    with pytest.raises(ValueError, match="no stem kernel.*model.json"):
        checkpoints.infer_backbone_config({k: v for k, v in shapes.items() if not k.startswith("layer_with_weights-0/")})
    cut = {k: v for k, v in shapes.items() if not k.startswith("layer_with_weights-9/")}  # the last block gone
    with pytest.raises(ValueError, match=r"basic blocks per stage \(2, 2, 2, 1\) match no R3D depth"):
        checkpoints.infer_backbone_config(cut)
    odd = dict(shapes)
    odd["layer_with_weights-0/kernel"] = (5, 7, 7, 3, 6)  # stem 6 channels, stages at width 1/16
    with pytest.raises(ValueError, match="cannot infer the width"):
        checkpoints.infer_backbone_config(odd)


def test_save_backbone_snapshot(tmp_path):
    cfg = models.BackboneConfig(depth=18, width_multiplier=0.0625, bn_synchronized=False)
    backbone = models.build_backbone(cfg)
    first = checkpoints.save_backbone_snapshot(backbone, str(tmp_path / "run" / "backbone"), 3, cfg)
    second = checkpoints.save_backbone_snapshot(backbone, str(tmp_path / "run" / "backbone"), 7, cfg)
    # TF's own reader of the state file (the oracle) sees both, newest last; paths are stored relative.
    state = tf.train.get_checkpoint_state(str(tmp_path / "run" / "backbone"))
    assert list(state.all_model_checkpoint_paths) == [first, second] and state.model_checkpoint_path == second
    os.rename(tmp_path / "run", tmp_path / "moved")
    prefix, got = checkpoints.resolve_backbone(str(tmp_path / "moved"))
    assert prefix == str(tmp_path / "moved" / "backbone" / "backbone-7") and got == cfg


def test_save_backbone_snapshot_fails(tmp_path):
    """A model.json that is broken or incomplete is an error naming the file and the key."""
    cfg = models.BackboneConfig(depth=18, width_multiplier=0.0625, bn_synchronized=False)
    prefix = checkpoints.save_backbone_snapshot(models.build_backbone(cfg), str(tmp_path / "backbone"), 1, cfg)
    (tmp_path / "backbone" / "model.json").write_text('{"depth": 18}')
    with pytest.raises(ValueError, match=r"model.json: missing key\(s\) \['width_multiplier'"):
        checkpoints.resolve_backbone(prefix)
    (tmp_path / "backbone" / "model.json").write_text('{"depth": 18,')
    with pytest.raises(ValueError, match="model.json: not valid JSON"):
        checkpoints.resolve_backbone(str(tmp_path))
    (tmp_path / "backbone" / "model.json").write_text(
        '{"depth": 19, "width_multiplier": 1, "bn_momentum": 0.9, "bn_epsilon": 1e-5}')
    with pytest.raises(ValueError, match=r"model.json: model.depth=19: must be one of"):
        checkpoints.resolve_backbone(prefix)
