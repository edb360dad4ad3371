"""ImageNet inflation: an R3D-50 backbone from 2D ResNet-50 weights with the I3D rule (cvrl.md §9).

Each 2D kernel [kH, kW, Cin, Cout] becomes the 3D kernel [kT, kH, kW, Cin, Cout] by repeating it kT times
along time and dividing by kT, so a clip that is constant in time gives the 2D network's activations
(exactly, away from the temporal borders where 'SAME' zero padding cuts taps off).

The source is a Keras `ResNet50` weights file (`keras.applications.ResNet50(...).save_weights(path)`,
with or without the classification top). Two differences from the R3D layout are absorbed here:
- Keras' ResNet50 convs carry a bias, the R3D convs do not: every bias b is folded into the following
  BN's moving mean (BN(Wx + b) = BN'(Wx) with mean' = mean - b).
- Keras' BN uses eps 1.001e-5, the R3D 1e-5: the difference is added to the moving variance.
Keras' ResNet50 is v1 (stride on the first 1x1 conv of a block); the R3D is v1.5 (stride on the 3x3), as
in the reference. The inflated model therefore equals, on time-constant clips, the 2D ResNet-50 v1.5 that
carries these weights, which is the network the reference's `imagenet` backbone inflates.

    cvrl-fast inflate --resnet50-weights resnet50.weights.h5 --out DIR/imagenet_backbone
"""
from __future__ import annotations

import numpy as np

from . import models

KERAS_BN_EPSILON = 1.001e-5
_CONV_SUFFIX = {"1": ("temporal_conv", "norm1"), "2": ("spatial_conv", "norm2"),
                "3": ("expand_conv", "norm3"), "0": ("shortcut_conv", "norm0")}


def load_keras_resnet50(weights_path: str):
    """Build keras.applications.ResNet50 and load `weights_path` (with or without the top)."""
    import warnings

    import keras

    errors = []
    for include_top in (False, True):
        net = keras.applications.ResNet50(weights=None, include_top=include_top)
        # Keras 3 loads .h5 leniently: layers it cannot match only warn and keep random weights. A
        # partial load must not pass for an inflated ImageNet baseline, so every such warning is an error.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                net.load_weights(weights_path)
            except (ValueError, KeyError) as e:  # wrong top variant: try the other one
                errors.append(f"include_top={include_top}: {e}")
                continue
        partial = [str(w.message) for w in caught if "freshly-initialized" in str(w.message)
                   or "Skipping" in str(w.message)]
        if not partial:
            return net
        errors.append(f"include_top={include_top}: {len(partial)} layers not loaded ({partial[0][:120]})")
    raise ValueError(f"{weights_path}: not a Keras ResNet50 weights file ({'; '.join(errors)})")


def layer_pairs(config: models.BackboneConfig | None = None) -> list[tuple[str, str, str, str]]:
    """(2D conv, 2D BN, 3D conv, 3D BN) layer names for every conv of ResNet-50, in model order."""
    cfg = config or models.BackboneConfig()
    if cfg.depth != 50 or cfg.width_multiplier != 1.0:
        raise ValueError(f"inflation needs depth 50, width 1 (got depth={cfg.depth}, "
                         f"width_multiplier={cfg.width_multiplier}): the 2D source is ResNet-50")
    pairs = [("conv1_conv", "conv1_bn", "stem_conv", "stem_bn")]
    for prefix, has_shortcut in models.block_names(cfg):
        stage, block = prefix.split("_")            # "res3", "block2"
        src = f"conv{stage[3:]}_{block}"           # keras: conv3_block2
        for k in ("0", "1", "2", "3"):
            if k == "0" and not has_shortcut:
                continue
            conv, bn = _CONV_SUFFIX[k]
            pairs.append((f"{src}_{k}_conv", f"{src}_{k}_bn", f"{prefix}_{conv}", f"{prefix}_{bn}"))
    return pairs


def inflate_kernel(kernel_2d: np.ndarray, temporal_size: int) -> np.ndarray:
    """I3D rule: [kH, kW, Cin, Cout] -> [kT, kH, kW, Cin, Cout], repeated along time and divided by kT."""
    if kernel_2d.ndim != 4:
        raise ValueError(f"inflate_kernel: expected a 4-D 2D kernel, got shape {kernel_2d.shape}")
    return np.repeat(kernel_2d[None], temporal_size, axis=0) / np.float32(temporal_size)


def inflate_resnet50(net_2d, backbone=None, config: models.BackboneConfig | None = None):
    """Copy a Keras ResNet50's weights into an R3D-50 backbone (built if not given) and return it."""
    cfg = config or models.BackboneConfig()
    if backbone is None:
        backbone = models.build_backbone(cfg)
    for conv2d, bn2d, conv3d, bn3d in layer_pairs(cfg):
        src_conv, src_bn = net_2d.get_layer(conv2d), net_2d.get_layer(bn2d)
        dst_conv, dst_bn = backbone.get_layer(conv3d), backbone.get_layer(bn3d)
        kernel = np.asarray(src_conv.kernel)
        t = int(dst_conv.kernel.shape[0])
        inflated = inflate_kernel(kernel, t)
        if tuple(inflated.shape) != tuple(dst_conv.kernel.shape):
            raise ValueError(f"{conv2d} -> {conv3d}: shape {inflated.shape} does not fit {tuple(dst_conv.kernel.shape)}")
        dst_conv.kernel.assign(inflated)
        bias = np.asarray(src_conv.bias) if src_conv.use_bias else 0.0
        dst_bn.gamma.assign(np.asarray(src_bn.gamma))
        dst_bn.beta.assign(np.asarray(src_bn.beta))
        dst_bn.moving_mean.assign(np.asarray(src_bn.moving_mean) - bias)
        dst_bn.moving_variance.assign(np.asarray(src_bn.moving_variance) + (src_bn.epsilon - dst_bn.epsilon))
    return backbone


def main_inflate(weights_path: str, out_path: str) -> str:
    from .checkpoints import save_official_backbone

    backbone = inflate_resnet50(load_keras_resnet50(weights_path))
    return save_official_backbone(backbone, out_path)
