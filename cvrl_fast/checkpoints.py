"""Official CVRL backbone checkpoints, both ways, through an explicit key map (cvrl.md §8).

A released backbone is an object-based TF2 checkpoint with one root child `backbone`; its keys are

    backbone/layer_with_weights-{i}/<attr path>/.ATTRIBUTES/VARIABLE_VALUE

(265 variables for R3D-50, listed with their shapes in tests/data/cvrl_r3d50_checkpoint_keys.tsv). A full training
checkpoint of the reference trainer stores the same tensors under `model/layer_with_weights-0/...`.
We never rely on the Keras 3 object graph: every tensor is read by name and assigned to a layer found by
its (predictable) name, and the loader asserts that every checkpoint variable in the chosen scope was
consumed and every model weight was assigned.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from . import models

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
PREFIXES = ("backbone/", "model/layer_with_weights-0/")

# Block attribute in the checkpoint -> layer-name suffix in `cvrl_fast.models`. They coincide by design
# (the checkpoint's `_norm1` is our `{block}_norm1`), but the map keeps the two spellings independent.
_BLOCK_ATTRS = {
    "_temporal_conv": ("temporal_conv", ("kernel",)),
    "_spatial_conv": ("spatial_conv", ("kernel",)),
    "_expand_conv": ("expand_conv", ("kernel",)),
    "_shortcut_conv": ("shortcut_conv", ("kernel",)),
    "_norm0": ("norm0", ("gamma", "beta", "moving_mean", "moving_variance")),
    "_norm1": ("norm1", ("gamma", "beta", "moving_mean", "moving_variance")),
    "_norm2": ("norm2", ("gamma", "beta", "moving_mean", "moving_variance")),
    "_norm3": ("norm3", ("gamma", "beta", "moving_mean", "moving_variance")),
}
_BN_VARS = ("gamma", "beta", "moving_mean", "moving_variance")


def key_map(backbone: "tf.keras.Model | None" = None, config: models.BackboneConfig | None = None):
    """Ordered {relative checkpoint key: (layer name, variable name)} for an R3D backbone.

    Relative keys omit the root prefix (`backbone/`) and the `/.ATTRIBUTES/VARIABLE_VALUE` suffix, e.g.
    `layer_with_weights-9/_temporal_conv/kernel` -> ("res4_block1_temporal_conv", "kernel").
    `layer_with_weights` counts weight-owning layers in model order: 0 stem conv, 1 stem BN, then one
    index per block (cvrl.md §8). The released checkpoints are bottleneck R3D-50s; the basic-block depths
    (18, 34) use the same scheme without `_expand_conv` and `_norm3`, which those blocks do not have.
    """
    cfg = config or models.BackboneConfig()
    skip = () if cfg.block_type == "bottleneck" else ("_expand_conv", "_norm3")
    out = {"layer_with_weights-0/kernel": ("stem_conv", "kernel")}
    for v in _BN_VARS:
        out[f"layer_with_weights-1/{v}"] = ("stem_bn", v)
    for index, (prefix, has_shortcut) in enumerate(models.block_names(cfg), start=2):
        for attr, (suffix, var_names) in _BLOCK_ATTRS.items():
            if attr in skip or (attr in ("_shortcut_conv", "_norm0") and not has_shortcut):
                continue
            for v in var_names:
                out[f"layer_with_weights-{index}/{attr}/{v}"] = (f"{prefix}_{suffix}", v)
    return out


def _model_variables(backbone) -> dict:
    """{(layer name, variable name): variable} for every weight of the backbone."""
    out = {}
    for layer in backbone._flatten_layers(include_self=False, recursive=True):
        for w in layer.weights:
            out[(layer.name, w.name)] = w
    return out


def _backbone_config_of(backbone) -> models.BackboneConfig:
    cfg = getattr(backbone, "cvrl_config", None)
    if cfg is not None:
        return cfg
    # Infer the depth from the block names (and the block type: 34 and 50 share a stage table).
    names = {layer.name for layer in backbone.layers}
    bottleneck = any(n.endswith("_expand_conv") for n in names)
    for depth, (block_type, blocks) in models.BLOCKS_PER_STAGE.items():
        if (block_type == "bottleneck") != bottleneck:
            continue
        expect = {p for p, _ in models.block_names(models.BackboneConfig(depth=depth))}
        have = {n.rsplit("_", 1)[0] for n in names if n.startswith("res") and n.endswith("_norm1")}
        if expect == have:
            return models.BackboneConfig(depth=depth)
    raise ValueError(f"model {backbone.name!r}: not an R3D backbone built by cvrl_fast.models")


def _choose_prefix(keys, path) -> str:
    for prefix in PREFIXES:
        if any(k.startswith(prefix + "layer_with_weights-") and k.endswith(SUFFIX) for k in keys):
            return prefix
    raise ValueError(
        f"{path}: no backbone variables found under {PREFIXES[0]!r} or {PREFIXES[1]!r} "
        f"({len(keys)} keys, e.g. {sorted(keys)[:3]})"
    )


def read_backbone_tensors(path: str) -> dict[str, np.ndarray]:
    """{relative key: array} of every backbone variable in the checkpoint at `path` (file prefix or dir)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise ValueError(f"{path}: directory holds no TF checkpoint")
        path = latest
    try:
        reader = tf.train.load_checkpoint(path)
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"{path}: not a readable TF checkpoint ({type(e).__name__}: {e})") from None
    shapes = reader.get_variable_to_shape_map()
    prefix = _choose_prefix(shapes.keys(), path)
    out = {}
    for key in shapes:
        # Optimizer slots live below a variable's path; they are not backbone variables.
        if not key.startswith(prefix) or not key.endswith(SUFFIX) or "/.OPTIMIZER_SLOT/" in key:
            continue
        out[key[len(prefix):-len(SUFFIX)]] = reader.get_tensor(key)
    return out


def load_official_backbone(path: str, backbone=None, config: models.BackboneConfig | None = None):
    """Load a released CVRL backbone (or the backbone of a full training checkpoint) into a Keras model.

    Builds `models.build_backbone(config)` unless `backbone` is given. Raises ValueError naming the key
    for a missing, unexpected or wrongly shaped variable. Returns the backbone; called on float32
    [B, T, H, W, 3] in [0, 1] with training=False it gives the res5 feature map.
    """
    if backbone is None:
        backbone = models.build_backbone(config)
        backbone.cvrl_config = config or models.BackboneConfig()
    cfg = config or _backbone_config_of(backbone)
    mapping = key_map(config=cfg)
    tensors = read_backbone_tensors(path)
    missing = [k for k in mapping if k not in tensors]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {len(missing)} backbone variable(s), first: {missing[0]!r}")
    extra = sorted(k for k in tensors if k not in mapping)
    if extra:
        raise ValueError(f"{path}: checkpoint has {len(extra)} unexpected backbone variable(s), first: {extra[0]!r}")
    variables = _model_variables(backbone)
    assigned = set()
    for key, target in mapping.items():
        if target not in variables:
            raise ValueError(f"model {backbone.name!r} has no variable {target[0]}/{target[1]} for key {key!r}")
        var = variables[target]
        value = tensors[key]
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(
                f"{path}: key {key!r} has shape {list(value.shape)}, model variable "
                f"{target[0]}/{target[1]} has {list(var.shape)}"
            )
        var.assign(value.astype(var.dtype))
        assigned.add(target)
    unassigned = [f"{n}/{v}" for (n, v) in variables if (n, v) not in assigned]
    if unassigned:
        raise ValueError(f"model {backbone.name!r}: {len(unassigned)} weight(s) not set by {path}, first: {unassigned[0]}")
    return backbone


def write_object_checkpoint(tensors: dict[str, np.ndarray], path: str, root: str = "backbone") -> str:
    """Write {relative key: array} as an object-based TF2 checkpoint at file prefix `path`.

    Each key `a/b/c` becomes the variable `c` of the nested trackable `root/a/b`, so the saved key is
    `root/a/b/c/.ATTRIBUTES/VARIABLE_VALUE` and the object graph has the same edge names as the
    reference's, which lets `tf.train.Checkpoint(backbone=...)` in TF Model Garden read it.
    """
    top = _Node()
    for key, value in tensors.items():
        *objs, var_name = key.split("/")
        node = top
        for name in objs:
            child = getattr(node, name, None)
            if child is None:
                child = _Node()
                setattr(node, name, child)
            node = child
        if getattr(node, var_name, None) is not None:
            raise ValueError(f"duplicate checkpoint key {key!r}")
        setattr(node, var_name, tf.Variable(value, trainable=False))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return tf.train.Checkpoint(**{root: top}).write(path)


class _Node(tf.__internal__.tracking.AutoTrackable):
    """A trackable with arbitrary edge names (`layer_with_weights-3`, `_norm1`): setattr tracks a child
    under exactly the attribute name, hyphens and leading underscores included."""


def save_official_backbone(backbone, path: str, config: models.BackboneConfig | None = None) -> str:
    """Write the backbone in the official key layout (the 265 keys of the manifest for R3D-50)."""
    cfg = config or _backbone_config_of(backbone)
    variables = _model_variables(backbone)
    mapping = key_map(config=cfg)
    tensors = {}
    for key, target in mapping.items():
        if target not in variables:
            raise ValueError(f"model {backbone.name!r} has no variable {target[0]}/{target[1]} for key {key!r}")
        tensors[key] = variables[target].numpy()
    used = set(mapping.values())
    unused = [f"{n}/{v}" for (n, v) in variables if (n, v) not in used]
    if unused:
        raise ValueError(f"model {backbone.name!r}: weight {unused[0]} has no official checkpoint key")
    return write_object_checkpoint(tensors, path, root="backbone")
