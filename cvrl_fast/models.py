"""CVRL networks in Keras 3: the R3D backbone (cvrl.md §3.1), the projection head (§3.2) and the
linear-evaluation head (§3.3).

Layer names are predictable so that the checkpoint key map (`cvrl_fast.checkpoints`) can address
every weight by name instead of relying on object-graph order:

    stem_conv, stem_bn, stem_relu, stem_pool
    res{stage}_block{j}_{temporal_conv,norm1,spatial_conv,norm2,expand_conv,norm3,shortcut_conv,norm0}
    head_dense{k}, head_bn{k} (k = 1..num_hidden), head_out

All convolutions use Keras' native 'same' padding, which on the TensorFlow backend *is* TF 'SAME'
(extra pad at the end), as the released weights require (cvrl.md §3.1).
"""
from __future__ import annotations

import dataclasses

import keras
from keras import layers

# ------------------------------------------------------------------------------------------------
# The stage table (cvrl.md §3.1). One row per stage: (name, base filters C, temporal kernel of conv a,
# spatial stride of the first block). Block counts per depth are below; the block type decides the
# output width (bottleneck: 4C, basic: C).
STAGES = (
    # name    C    kT  stride
    ("res2", 64, 1, 1),
    ("res3", 128, 1, 2),
    ("res4", 256, 3, 2),
    ("res5", 512, 3, 2),
)
BLOCKS_PER_STAGE = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STEM_FILTERS = 64
STEM_KERNEL = (5, 7, 7)
STEM_STRIDES = (2, 2, 2)
POOL_SIZE = (1, 3, 3)
POOL_STRIDES = (1, 2, 2)
BOTTLENECK_EXPANSION = 4
# R3D-50 1x: 31,672,128 trainable values + 53,120 BN moving statistics (cvrl.md §3.1).
R3D50_NUM_PARAMS = 31_725_248
PROJECTION_HEAD_NUM_PARAMS = 12_875_904
PRETRAIN_MODEL_NUM_PARAMS = 44_601_152
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    depth: int = 50
    width_multiplier: float = 1.0
    bn_momentum: float = 0.9  # Keras convention: moving <- 0.9 * moving + 0.1 * batch
    bn_epsilon: float = 1e-5
    bn_synchronized: bool = True  # sync BN across replicas (cvrl.md §5)
    # Not the reference (cvrl.md §3.1 starts every gamma at 1): start each block's last BN at gamma 0, so
    # every residual block begins as its shortcut (Goyal et al. 2017). Keeps gradients tame in short,
    # small-batch runs such as the demo; changes no shape or checkpoint key.
    zero_init_residual: bool = False

    def __post_init__(self):
        if self.depth not in BLOCKS_PER_STAGE:
            raise ValueError(f"model.depth={self.depth!r}: must be one of {sorted(BLOCKS_PER_STAGE)}")
        if not self.width_multiplier > 0:
            raise ValueError(f"model.width_multiplier={self.width_multiplier!r}: must be > 0")

    @property
    def block_type(self) -> str:
        return BLOCKS_PER_STAGE[self.depth][0]

    @property
    def blocks(self) -> tuple[int, ...]:
        return BLOCKS_PER_STAGE[self.depth][1]

    def filters(self, base: int) -> int:
        return max(1, int(round(base * self.width_multiplier)))


def _conv(filters, kernel, strides, name):
    # Keras VarianceScaling defaults = scale 1, fan_in, truncated normal (cvrl.md §3.1); no bias (BN follows).
    return layers.Conv3D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(),
        name=name,
    )


def _bn(cfg: BackboneConfig, name, last_in_block: bool = False):
    gamma = "zeros" if last_in_block and cfg.zero_init_residual else "ones"
    return layers.BatchNormalization(
        momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon, synchronized=cfg.bn_synchronized, name=name,
        gamma_initializer=gamma,
    )


def bottleneck_block(x, cfg: BackboneConfig, filters: int, temporal_kernel: int, stride: int,
                     use_projection: bool, prefix: str):
    """One R3D bottleneck: kTx1x1 reduce -> 1x3x3 (spatial stride) -> 1x1x1 expand, plus shortcut."""
    out_filters = BOTTLENECK_EXPANSION * filters
    if use_projection:
        shortcut = _conv(out_filters, (1, 1, 1), (1, stride, stride), f"{prefix}_shortcut_conv")(x)
        shortcut = _bn(cfg, f"{prefix}_norm0")(shortcut)
    else:
        shortcut = x
    y = _conv(filters, (temporal_kernel, 1, 1), (1, 1, 1), f"{prefix}_temporal_conv")(x)
    y = _bn(cfg, f"{prefix}_norm1")(y)
    y = layers.ReLU(name=f"{prefix}_relu1")(y)
    y = _conv(filters, (1, 3, 3), (1, stride, stride), f"{prefix}_spatial_conv")(y)
    y = _bn(cfg, f"{prefix}_norm2")(y)
    y = layers.ReLU(name=f"{prefix}_relu2")(y)
    y = _conv(out_filters, (1, 1, 1), (1, 1, 1), f"{prefix}_expand_conv")(y)
    y = _bn(cfg, f"{prefix}_norm3", last_in_block=True)(y)
    y = layers.Add(name=f"{prefix}_add")([y, shortcut])
    return layers.ReLU(name=f"{prefix}_out")(y)


def basic_block(x, cfg: BackboneConfig, filters: int, temporal_kernel: int, stride: int,
                use_projection: bool, prefix: str):
    """R3D-18/34 block: kTx3x3 (spatial stride) -> 1x3x3, plus shortcut. Not in the released set."""
    if use_projection:
        shortcut = _conv(filters, (1, 1, 1), (1, stride, stride), f"{prefix}_shortcut_conv")(x)
        shortcut = _bn(cfg, f"{prefix}_norm0")(shortcut)
    else:
        shortcut = x
    y = _conv(filters, (temporal_kernel, 3, 3), (1, stride, stride), f"{prefix}_temporal_conv")(x)
    y = _bn(cfg, f"{prefix}_norm1")(y)
    y = layers.ReLU(name=f"{prefix}_relu1")(y)
    y = _conv(filters, (1, 3, 3), (1, 1, 1), f"{prefix}_spatial_conv")(y)
    y = _bn(cfg, f"{prefix}_norm2", last_in_block=True)(y)
    y = layers.Add(name=f"{prefix}_add")([y, shortcut])
    return layers.ReLU(name=f"{prefix}_out")(y)


def block_names(cfg: BackboneConfig) -> list[tuple[str, bool]]:
    """(prefix, has_shortcut_conv) for every block in model order: [("res2_block1", True), ...]."""
    out = []
    for (stage, _c, _kt, _s), n in zip(STAGES, cfg.blocks):
        for j in range(n):
            prefix = f"{stage}_block{j + 1}"
            # Bottleneck stages always change width at block 1; basic res2 keeps 64 -> 64 at stride 1.
            out.append((prefix, j == 0 and _needs_projection(cfg, stage)))
    return out


def _needs_projection(cfg: BackboneConfig, stage: str) -> bool:
    if cfg.block_type == "bottleneck":
        return True
    return stage != "res2"


def build_backbone(config: BackboneConfig | None = None, *, num_frames=None, image_size=None,
                   name: str = "r3d_backbone") -> keras.Model:
    """R3D backbone: float32 [B, T, H, W, 3] in [0, 1] -> res5 map [B, T/2, H/32, W/32, 4*512*w]."""
    cfg = config or BackboneConfig()
    inputs = keras.Input(shape=(num_frames, image_size, image_size, 3), name="frames")
    x = _conv(cfg.filters(STEM_FILTERS), STEM_KERNEL, STEM_STRIDES, "stem_conv")(inputs)
    x = _bn(cfg, "stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    # TF 'SAME' max-pool pads with -inf, i.e. padded cells never win (cvrl.md §3.1).
    x = layers.MaxPooling3D(POOL_SIZE, POOL_STRIDES, padding="same", name="stem_pool")(x)
    block_fn = bottleneck_block if cfg.block_type == "bottleneck" else basic_block
    for (stage, base, kt, stride), n in zip(STAGES, cfg.blocks):
        for j in range(n):
            x = block_fn(
                x,
                cfg,
                filters=cfg.filters(base),
                temporal_kernel=kt,
                stride=stride if j == 0 else 1,
                use_projection=(j == 0 and _needs_projection(cfg, stage)),
                prefix=f"{stage}_block{j + 1}",
            )
    return keras.Model(inputs, x, name=name)


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    hidden_dim: int = 2048
    num_hidden_layers: int = 3
    output_dim: int = 128
    bn_momentum: float = 0.997
    bn_epsilon: float = 1e-5
    bn_synchronized: bool = True


def build_projection_head(in_dim: int, config: HeadConfig | None = None, name="projection_head") -> keras.Model:
    """3 x [Dense 2048 + bias -> BN(0.997) -> ReLU] -> Dense 128 (cvrl.md §3.2). Output float32."""
    cfg = config or HeadConfig()
    inputs = keras.Input(shape=(in_dim,), name="pooled")
    x = inputs
    for k in range(1, cfg.num_hidden_layers + 1):
        x = layers.Dense(cfg.hidden_dim, kernel_initializer="glorot_uniform", name=f"head_dense{k}")(x)
        x = layers.BatchNormalization(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon,
                                      synchronized=cfg.bn_synchronized, name=f"head_bn{k}")(x)
        x = layers.ReLU(name=f"head_relu{k}")(x)
    x = layers.Dense(cfg.output_dim, kernel_initializer="glorot_uniform", name="head_out")(x)
    # The loss works in float32 whatever the compute dtype (cvrl.md §3.2).
    x = layers.Activation("linear", dtype="float32", name="head_float32")(x)
    return keras.Model(inputs, x, name=name)


def build_pretrain_model(backbone: keras.Model, head_config: HeadConfig | None = None,
                         name: str = "cvrl_pretrain") -> keras.Model:
    """backbone -> global average pool over T,H,W -> projection head. Input [2B, T, H, W, 3] in [0,1]."""
    inputs = keras.Input(shape=backbone.input_shape[1:], name="frames")
    features = backbone(inputs)
    pooled = layers.GlobalAveragePooling3D(name="pool")(features)
    head = build_projection_head(features.shape[-1], head_config)
    return keras.Model(inputs, head(pooled), name=name)


def build_linear_classifier(backbone: keras.Model, num_classes: int, name="cvrl_linear") -> keras.Model:
    """Frozen-backbone linear evaluation: pool -> L2 normalise -> Dense(num_classes) (cvrl.md §3.3).

    The caller calls the returned model with training=False for the backbone part (BN in inference
    mode, cvrl.md §6.1); the backbone is marked non-trainable here so only the Dense layer trains.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes}: must be >= 1")
    backbone.trainable = False
    inputs = keras.Input(shape=backbone.input_shape[1:], name="frames")
    features = backbone(inputs, training=False)
    pooled = layers.GlobalAveragePooling3D(name="pool")(features)
    normed = layers.UnitNormalization(axis=-1, name="l2_normalize")(pooled)
    logits = layers.Dense(num_classes, name="classifier")(normed)
    logits = layers.Activation("linear", dtype="float32", name="logits_float32")(logits)
    return keras.Model(inputs, logits, name=name)


def count_params(model: keras.Model) -> int:
    """All values held by the model, trainable or not (BN moving statistics included)."""
    total = 0
    for w in model.weights:
        n = 1
        for d in w.shape:
            n *= int(d)
        total += n
    return total


def kernel_variables(model: keras.Model) -> list:
    """Every conv/dense kernel, selected by layer type (cvrl.md §4: weight decay on kernels only)."""
    out = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, (layers.Conv3D, layers.Conv2D, layers.Dense)):
            out.append(layer.kernel)
    return out
