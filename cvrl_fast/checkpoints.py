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

import copy
import dataclasses
import glob
import json
import os
import re

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
    return _assign_backbone_tensors(read_backbone_tensors(path), backbone, cfg, path)


def _assign_backbone_tensors(tensors: dict, backbone, cfg: models.BackboneConfig, path: str):
    """Assign {relative key: array} to `backbone` through `key_map`, every key and weight accounted for."""
    mapping = key_map(config=cfg)
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


# ================================================================================================
# `--backbone` of linear-eval, finetune and extract: a pretrain workdir, a training checkpoint or an
# official backbone, with depth and width read from the run instead of from the evaluation config.
#
# The pretrain workdir layout (written by `cvrl-fast pretrain`; `save_backbone_snapshot` writes its
# backbone/ part):
#     WORKDIR/config.json                    the pretraining config (Config.to_dict())
#     WORKDIR/checkpoints/ckpt-N.*           tf.train.CheckpointManager of Checkpoint(model=, optimizer=, ...)
#     WORKDIR/checkpoints/checkpoint         its checkpoint-state file
#     WORKDIR/backbone/backbone-N.*          the backbone at step N in the official layout
#     WORKDIR/backbone/checkpoint            checkpoint-state file: tf.train.latest_checkpoint gives the newest
#     WORKDIR/backbone/model.json            {"depth", "width_multiplier", "bn_momentum", "bn_epsilon"}
# ================================================================================================
MODEL_JSON = "model.json"
CONFIG_JSON = "config.json"
MODEL_JSON_KEYS = ("depth", "width_multiplier", "bn_momentum", "bn_epsilon")

ACCEPTED_BACKBONES = (
    "--backbone accepts: a pretrain workdir (holding backbone/ or config.json), its backbone/ or checkpoints/ "
    "directory, a training checkpoint prefix such as WORKDIR/checkpoints/ckpt-1000, or an official backbone "
    "checkpoint prefix such as r3d_1x_k400_800ep_backbone-1 (the path without .index / .data-*)")


@dataclasses.dataclass(frozen=True)
class ResolvedBackbone:
    """Where a `--backbone` path leads: the checkpoint to read and the architecture of its backbone."""
    path: str                       # what the user passed
    prefix: str                     # checkpoint prefix to read
    config: models.BackboneConfig   # depth, width and BN settings of the run (bn_synchronized=False)
    kind: str                       # "official" (official key layout) or "training" (Keras 3 object graph)
    source: str                     # where the config came from, for messages
    pretrain_config: dict | None = None  # the run's config.json (kind "training")

    def describe(self) -> str:
        c = self.config
        return f"R3D-{c.depth} width {c.width_multiplier:g} from {self.prefix}"


def resolve_backbone(path) -> tuple[str, models.BackboneConfig]:
    """(checkpoint prefix, BackboneConfig) of a `--backbone` argument (see `ACCEPTED_BACKBONES`).

    - a pretrain workdir -> its newest `backbone/backbone-N` with `backbone/model.json` (or, if the run has
      no backbone/ yet, its newest training checkpoint with the model config from `config.json`);
    - `WORKDIR/backbone` -> the newest backbone in it; `WORKDIR/checkpoints` -> its newest training checkpoint;
    - a training checkpoint `WORKDIR/checkpoints/ckpt-N` -> `WORKDIR/backbone/backbone-N` if it exists, else
      the training checkpoint itself (then `load_backbone` restores the backbone from it);
    - an official backbone prefix -> itself, with `model.json` beside it or the depth and width inferred
      from its tensors (`infer_backbone_config`).
    FileNotFoundError for a missing path, ValueError for anything else that is not a backbone.
    """
    r = resolve_backbone_details(path)
    return r.prefix, r.config


def resolve_backbone_details(path) -> ResolvedBackbone:
    """`resolve_backbone` with the kind of checkpoint and where its config came from."""
    given = os.fspath(path)
    p = given.rstrip(os.sep) or given
    # A checkpoint's own file named instead of its prefix: tolerated, it is unambiguous.
    m = re.fullmatch(r"(.+)\.(index|data-\d+-of-\d+)", p)
    if m and os.path.isfile(p):
        p = m.group(1)
    if os.path.isdir(p):
        return _resolve_dir(given, p)
    if os.path.isfile(p + ".index"):
        return _resolve_prefix(given, p)
    if os.path.exists(p):
        raise ValueError(f"{given}: not a TF checkpoint (no {os.path.basename(p)}.index beside it). "
                         f"{ACCEPTED_BACKBONES}")
    raise FileNotFoundError(f"{given}: no such file or directory (nor a checkpoint prefix with a .index file). "
                            f"{ACCEPTED_BACKBONES}")


def _latest(directory: str) -> str | None:
    """The newest checkpoint named by `directory/checkpoint`, looked up inside `directory`.

    Only the name is taken from the state file: a state written with absolute paths (update_checkpoint_state
    does that) would otherwise send a copied or moved workdir back to the original run's files.
    """
    if not os.path.isfile(os.path.join(directory, "checkpoint")):
        return None
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (tf.errors.OpError, ValueError) as e:  # e.g. a text-proto syntax error
        raise ValueError(f"{os.path.join(directory, 'checkpoint')}: unreadable checkpoint-state file ({e})") from None
    if state is None or not state.model_checkpoint_path:
        return None
    prefix = os.path.join(directory, os.path.basename(state.model_checkpoint_path))
    return prefix if os.path.isfile(prefix + ".index") else None


def _resolve_dir(given: str, d: str) -> ResolvedBackbone:
    backbone_dir, ckpt_dir = os.path.join(d, "backbone"), os.path.join(d, "checkpoints")
    if os.path.isdir(backbone_dir) or os.path.isfile(os.path.join(d, CONFIG_JSON)):  # a pretrain workdir
        latest = _latest(backbone_dir) if os.path.isdir(backbone_dir) else None
        if latest:
            return _resolve_prefix(given, latest)
        latest = _latest(ckpt_dir) if os.path.isdir(ckpt_dir) else None
        if latest:
            return _resolve_prefix(given, latest)
        raise ValueError(f"{given}: a pretrain workdir without a checkpoint yet (neither backbone/ nor checkpoints/ "
                         "has a 'checkpoint' state file naming an existing checkpoint); wait for the first "
                         "checkpoint (checkpoint.every_steps) or pass a checkpoint prefix")
    latest = _latest(d)
    if latest:
        return _resolve_prefix(given, latest)
    raise ValueError(f"{given}: directory holds no TF checkpoint (no 'checkpoint' state file naming one). "
                     f"{ACCEPTED_BACKBONES}")


def _checkpoint_shapes(prefix: str) -> dict:
    try:
        return tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"{prefix}: not a readable TF checkpoint ({type(e).__name__}: {e})") from None


def _is_training_checkpoint(keys) -> bool:
    """A cvrl_fast training checkpoint: global_step plus the Keras 3 model graph (no official backbone keys)."""
    return "global_step/.ATTRIBUTES/VARIABLE_VALUE" in keys and any(k.startswith("model/") for k in keys)


def _resolve_prefix(given: str, prefix: str) -> ResolvedBackbone:
    keys = _checkpoint_shapes(prefix)
    here = os.path.dirname(prefix)
    if any(k.startswith(pfx + "layer_with_weights-") and k.endswith(SUFFIX) for pfx in PREFIXES for k in keys):
        spec = os.path.join(here, MODEL_JSON)
        if os.path.isfile(spec):
            return ResolvedBackbone(given, prefix, read_model_json(spec), "official", spec)
        run_config = os.path.join(os.path.dirname(here), CONFIG_JSON)
        if os.path.basename(here) == "backbone" and os.path.isfile(run_config):  # WORKDIR/backbone/backbone-N
            return ResolvedBackbone(given, prefix, _backbone_config_from_pretrain(_read_pretrain_config(run_config),
                                                                                  run_config), "official", run_config)
        return ResolvedBackbone(given, prefix, infer_backbone_config(backbone_shapes(prefix), prefix), "official",
                                f"the tensor shapes of {prefix}")
    if _is_training_checkpoint(keys):
        workdir = os.path.dirname(here)  # WORKDIR/checkpoints/ckpt-N -> WORKDIR
        m = re.fullmatch(r"ckpt-(\d+)", os.path.basename(prefix))
        if m:
            twin = os.path.join(workdir, "backbone", f"backbone-{m.group(1)}")
            if os.path.isfile(twin + ".index"):
                return _resolve_prefix(given, twin)
        config_json = os.path.join(workdir, CONFIG_JSON)
        if not os.path.isfile(config_json):
            raise ValueError(f"{prefix}: a cvrl_fast training checkpoint, but the run's {config_json} (written by "
                             "cvrl-fast pretrain) is missing; it is needed to rebuild the model. Restore it, or pass "
                             "an official-layout backbone (WORKDIR/backbone/backbone-N)")
        pretrain = _read_pretrain_config(config_json)
        return ResolvedBackbone(given, prefix, _backbone_config_from_pretrain(pretrain, config_json), "training",
                                config_json, pretrain)
    raise ValueError(f"{prefix}: a TF checkpoint without backbone variables ({len(keys)} keys, e.g. "
                     f"{sorted(keys)[:3]}). {ACCEPTED_BACKBONES}")


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None


def read_model_json(path: str) -> models.BackboneConfig:
    """The BackboneConfig of `model.json` ({"depth", "width_multiplier", "bn_momentum", "bn_epsilon"})."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with keys {list(MODEL_JSON_KEYS)}")
    missing = [k for k in MODEL_JSON_KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing} (a model.json holds {list(MODEL_JSON_KEYS)})")
    return _backbone_config(data["depth"], data["width_multiplier"], data["bn_momentum"], data["bn_epsilon"], path)


def _backbone_config(depth, width, momentum, epsilon, source: str) -> models.BackboneConfig:
    try:
        if isinstance(depth, bool) or int(depth) != depth:
            raise ValueError(f"depth={depth!r} is not an integer")
        # Evaluation runs on one replica: plain BN (bn_synchronized is a distribution detail, not a weight).
        return models.BackboneConfig(depth=int(depth), width_multiplier=float(width), bn_momentum=float(momentum),
                                     bn_epsilon=float(epsilon), bn_synchronized=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: {e}") from None


def _read_pretrain_config(path: str) -> dict:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected the pretraining config as a JSON object")
    if any("." in k for k in data):  # tolerate flat dotted keys ("model.depth": 50)
        nested: dict = {}
        for key, value in data.items():
            node = nested
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        data = nested
    return data


def _backbone_config_from_pretrain(pretrain: dict, source: str) -> models.BackboneConfig:
    model = pretrain.get("model")
    if not isinstance(model, dict):
        raise ValueError(f"{source}: no 'model' section (model.depth, model.width_multiplier, ...)")
    defaults = models.BackboneConfig()
    if "depth" not in model or "width_multiplier" not in model:
        raise ValueError(f"{source}: the model section lacks model.depth or model.width_multiplier")
    return _backbone_config(model["depth"], model["width_multiplier"], model.get("bn_momentum", defaults.bn_momentum),
                            model.get("bn_epsilon", defaults.bn_epsilon), source)


def backbone_shapes(path: str) -> dict[str, tuple]:
    """{relative key: shape} of the backbone variables in an official-layout checkpoint (nothing is read)."""
    shapes = _checkpoint_shapes(path)
    prefix = _choose_prefix(shapes.keys(), path)
    return {k[len(prefix):-len(SUFFIX)]: tuple(v) for k, v in shapes.items()
            if k.startswith(prefix) and k.endswith(SUFFIX) and "/.OPTIMIZER_SLOT/" not in k}


def infer_backbone_config(shapes: dict, source: str = "checkpoint") -> models.BackboneConfig:
    """Depth and width of an official-layout backbone from its keys and shapes (no model.json needed).

    Block type: bottleneck if any block has `_expand_conv`. Stages: each starts with a block that has
    `_shortcut_conv` (for basic blocks res2 has none and starts at index 2), so the block indices between
    them give the blocks per stage, matched against `models.BLOCKS_PER_STAGE`. Width: the stem's output
    channels / 64, checked against every stage's width (falling back to res5 / 512 when rounding at an
    unusual width makes the stem ambiguous). BN momentum/epsilon are not stored: the defaults are used.
    """
    attrs: dict[int, set] = {}
    for key in shapes:
        m = re.fullmatch(r"layer_with_weights-(\d+)/(.+)", key)
        if m:
            attrs.setdefault(int(m.group(1)), set()).add(m.group(2).split("/")[0])
    fix = ('; put a model.json beside it ({"depth": 50, "width_multiplier": 1.0, "bn_momentum": 0.9, '
           '"bn_epsilon": 1e-05})')
    stem = shapes.get("layer_with_weights-0/kernel")
    if stem is None or len(stem) != 5:
        raise ValueError(f"{source}: cannot infer the backbone: no stem kernel layer_with_weights-0/kernel{fix}")
    blocks = sorted(i for i in attrs if i >= 2)
    if not blocks or blocks != list(range(2, blocks[-1] + 1)):
        raise ValueError(f"{source}: cannot infer the backbone: block indices {blocks[:3]}... are not 2, 3, ...{fix}")
    bottleneck = any("_expand_conv" in attrs[i] for i in blocks)
    starts = [i for i in blocks if "_shortcut_conv" in attrs[i]]
    if not bottleneck:
        starts = [2] + [i for i in starts if i != 2]
    counts = tuple(b - a for a, b in zip(starts, starts[1:] + [blocks[-1] + 1]))
    block_type = "bottleneck" if bottleneck else "basic"
    depth = next((d for d, (t, n) in models.BLOCKS_PER_STAGE.items() if t == block_type and n == counts), None)
    if depth is None:
        raise ValueError(f"{source}: cannot infer the backbone: {block_type} blocks per stage {counts} match no "
                         f"R3D depth ({ {d: n for d, (_, n) in models.BLOCKS_PER_STAGE.items()} }){fix}")
    # Each stage's base width C, as stored: the spatial conv of its first block outputs C channels.
    stage_channels = [shapes[f"layer_with_weights-{i}/_spatial_conv/kernel"][-1] for i in starts]
    for width in (stem[-1] / models.STEM_FILTERS, stage_channels[-1] / models.STAGES[-1][1]):
        cfg = models.BackboneConfig(depth=depth, width_multiplier=float(width), bn_synchronized=False)
        if cfg.filters(models.STEM_FILTERS) == stem[-1] and all(
                cfg.filters(base) == c for (_, base, _, _), c in zip(models.STAGES, stage_channels)):
            return cfg
    raise ValueError(f"{source}: cannot infer the width: stem {stem[-1]} and stage channels {stage_channels} fit no "
                     f"single width multiplier{fix}")


def check_backbone_matches(resolved: ResolvedBackbone, depth=None, width_multiplier=None) -> None:
    """Raise if the evaluation config names a depth or width that contradicts the run (0/None: not given)."""
    c = resolved.config
    for key, want, have in (("model.depth", depth, c.depth), ("model.width_multiplier", width_multiplier,
                                                                c.width_multiplier)):
        if want and float(want) != float(have):
            raise ValueError(f"config {key}={want:g} contradicts the backbone {resolved.path}: it has {key}={have:g} "
                             f"(from {resolved.source}); drop --config.{key} (depth and width are read from the "
                             "backbone's run)")


def load_backbone(path, *, depth=None, width_multiplier=None):
    """(Keras backbone, ResolvedBackbone) for a `--backbone` argument, weights loaded and checked.

    `depth`/`width_multiplier` (None or 0: not given) are checked against the run's own values. The backbone
    accepts any clip shape ([B, T, H, W, 3] floats in [0, 1]); BN is plain (not synchronized).
    """
    r = resolve_backbone_details(path)
    check_backbone_matches(r, depth, width_multiplier)
    if r.kind == "official":
        backbone = load_official_backbone(r.prefix, config=r.config)
    else:
        backbone = models.build_backbone(r.config)
        _assign_backbone_tensors(_restore_training_backbone(r), backbone, r.config, r.prefix)
    backbone.cvrl_config = r.config
    return backbone, r


def _restore_training_backbone(r: ResolvedBackbone) -> dict[str, np.ndarray]:
    """{official relative key: array} of the backbone in a cvrl_fast training checkpoint.

    The Keras 3 object graph has no stable names, so the pretraining model is rebuilt from the run's
    config.json exactly as the trainer built it and restored object by object; every object of the rebuilt
    model must find its checkpoint value (optimizer state and the loader position may stay unread).
    """
    from . import trainer  # lazy: the trainer pulls in the whole training stack
    from .configs import Config

    pretrain = copy.deepcopy(r.pretrain_config)
    # init_backbone only seeds a fresh run; the checkpoint holds the trained values (and the file may be gone).
    pretrain.setdefault("model", {})["init_backbone"] = ""
    try:
        model, trained = trainer.build_model(Config(pretrain))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{r.source}: cannot rebuild the pretraining model from this config ({e})") from None
    try:
        status = tf.train.Checkpoint(model=model).restore(r.prefix)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        first = str(e).strip().splitlines()[0][:300]
        raise ValueError(f"{r.prefix}: the model rebuilt from {r.source} does not match this training checkpoint "
                         f"({type(e).__name__}: {first}); was config.json written by the same run?") from None
    variables = _model_variables(trained)
    return {key: variables[target].numpy() for key, target in key_map(config=r.config).items()}


def model_json(cfg: models.BackboneConfig) -> dict:
    """The architecture as `model.json` records it beside a backbone."""
    return {"depth": cfg.depth, "width_multiplier": cfg.width_multiplier, "bn_momentum": cfg.bn_momentum,
            "bn_epsilon": cfg.bn_epsilon}


def save_backbone_snapshot(backbone, directory: str, step: int, config: models.BackboneConfig | None = None,
                           max_to_keep: int | None = None) -> str:
    """Write `directory/backbone-{step}` in the official layout, `directory/model.json`, and the checkpoint-state
    file so `tf.train.latest_checkpoint(directory)` is this backbone; returns the prefix. With `max_to_keep`,
    the oldest snapshots beyond that many are deleted (after the state file stops naming them).

    The state file names checkpoints relative to `directory` (the folder can be moved) and is written last,
    by an atomic rename, so a crash in between leaves the previous state pointing at complete files.
    """
    cfg = config or _backbone_config_of(backbone)
    os.makedirs(directory, exist_ok=True)
    name = f"backbone-{int(step)}"
    prefix = save_official_backbone(backbone, os.path.join(directory, name), config=cfg)
    tmp = os.path.join(directory, f".{MODEL_JSON}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(model_json(cfg), f, indent=1)
    os.replace(tmp, os.path.join(directory, MODEL_JSON))
    state = tf.train.get_checkpoint_state(directory)
    names = [os.path.basename(p) for p in (state.all_model_checkpoint_paths if state else []) if
             os.path.basename(p) != name] + [name]
    dropped, names = (names[:-max_to_keep], names[-max_to_keep:]) if max_to_keep else ([], names)
    write_checkpoint_state(directory, names)
    for old in dropped:
        for f in glob.glob(glob.escape(os.path.join(directory, old)) + ".*"):
            os.remove(f)
    return prefix


def write_checkpoint_state(directory: str, names: list[str]) -> None:
    """The `checkpoint` state file (CheckpointState text proto) naming `names` (relative), the last as newest.

    Written by hand, atomically (temp file + os.replace): tf.compat.v1.train.update_checkpoint_state does
    the same but prints a deprecation notice on every call.
    """
    def quoted(n):
        return '"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"'

    text = f"model_checkpoint_path: {quoted(names[-1])}\n" + "".join(
        f"all_model_checkpoint_paths: {quoted(n)}\n" for n in names)
    tmp = os.path.join(directory, f".checkpoint.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(directory, "checkpoint"))
