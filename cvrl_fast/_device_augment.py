"""The colour stage of CVRL's augmentation as TensorFlow ops, for the accelerator (`augment_on="device"`).

The host engine decodes, crops, resizes (truncating to uint8 in parity mode, as the reference does) and
flips; `device_augment` does the rest on the replica's device: x/255, colour jitter in the clip's random
order with a clip to [0, 1] after each op, grayscale, the Gaussian blur (2r+1 taps, r = (S div 10) div 2,
zero padding, horizontal then vertical), solarize and the final clip to [0, 1]. These are the ops, order
and arithmetic of the host path (`csrc/augment.cc`, cvrl.md §2.2): brightness multiplies, contrast uses
the clip-wide channel mean, saturation and hue follow TF's hexcone HSV model.

Every parameter is per clip (one row of `colour`), drawn by the engine with the same Philox draws as host
mode. Batched over B with no data-dependent control flow: the random op order is four slots, each
applying all four jitter ops with identity factors except the one the clip's order puts there, so one
graph serves every clip and XLA compiles it (`jit_compile=True`) on CPU, GPU and TPU.
"""
from __future__ import annotations

import numpy as np

# One row of `colour` (float32 [K]) per clip; the engine writes the same layout (colour_params below).
COLOUR_FIELDS = ("jitter", "brightness", "contrast", "saturation", "hue", "order_0", "order_1", "order_2",
                 "order_3", "grayscale", "blur", "blur_sigma", "solarize")
NUM_COLOUR_PARAMS = len(COLOUR_FIELDS)
_F = {name: i for i, name in enumerate(COLOUR_FIELDS)}
# Jitter op ids in `order_i`, as in the engine (csrc/sampling.h: brightness, contrast, saturation, hue).
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3
_OP_NAMES = ("brightness", "contrast", "saturation", "hue")


def colour_params(view: dict) -> np.ndarray:
    """float32 [K]: one view's colour parameters (a view dict of `sample_params` or
    `sample_pair(..., return_params=True)`) in the `colour` layout."""
    out = np.zeros(NUM_COLOUR_PARAMS, np.float32)
    for key in ("jitter", "brightness", "contrast", "saturation", "hue", "grayscale", "blur", "blur_sigma",
                "solarize"):
        out[_F[key]] = float(view[key])
    for i, op in enumerate(view["jitter_order"]):
        out[_F[f"order_{i}"]] = _OP_NAMES.index(op) if isinstance(op, str) else int(op)
    return out


def blur_radius(crop_size: int) -> int:
    """The blur's radius for crop size S: (S div 10) div 2, 11 (23 taps) at 224 (cvrl.md §2.2)."""
    return (int(crop_size) // 10) // 2


# ------------------------------------------------------------------------------------------------
# The ops, on x: float32 [B, T, H, W, 3] in [0, 1], with per-clip parameters p: float32 [B].
# ------------------------------------------------------------------------------------------------
def _per_clip(p):
    import tensorflow as tf

    return tf.reshape(p, [-1, 1, 1, 1, 1])


def _clip01(x):
    import tensorflow as tf

    return tf.clip_by_value(x, 0.0, 1.0)


def _brightness(x, factor):
    return _clip01(x * _per_clip(factor))


def _contrast(x, factor):
    import tensorflow as tf

    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)  # per channel, over the whole clip (T, H, W)
    f = _per_clip(factor)
    return _clip01((x - mean) * f + mean)


def _channels(x):
    import tensorflow as tf

    return tf.unstack(x, axis=-1)


def _saturation(x, factor):
    """TF's S <- min(S f, 1) in hexcone HSV, written as each channel moving toward v = max by one ratio
    (as the engine computes it): c' = v - (v - c) min(f, v / range)."""
    import tensorflow as tf

    r, g, b = _channels(x)
    v = tf.maximum(r, tf.maximum(g, b))
    rng = v - tf.minimum(r, tf.minimum(g, b))
    ratio = tf.minimum(_per_clip(factor)[..., 0], v / tf.maximum(rng, 1e-30))
    return _clip01(tf.stack([v - (v - c) * ratio for c in (r, g, b)], axis=-1))


def _hue(x, delta):
    """H <- (H + delta) mod 1 in TF's hexcone HSV model (rgb -> hsv, rotate, hsv -> rgb)."""
    import tensorflow as tf

    r, g, b = _channels(x)
    v = tf.maximum(tf.maximum(r, g), b)
    rng = v - tf.minimum(tf.minimum(r, g), b)
    s = rng / tf.maximum(v, 1e-30)
    norm = 1.0 / (6.0 * tf.maximum(rng, 1e-30))
    h = tf.where(tf.equal(r, v), norm * (g - b),
                 tf.where(tf.equal(g, v), norm * (b - r) + 2.0 / 6.0, norm * (r - g) + 4.0 / 6.0))
    h = tf.where(rng > 0, h, 0.0)
    h = tf.where(h < 0, h + 1.0, h)
    h = h + _per_clip(delta)[..., 0]
    h = h - tf.floor(h)
    h = tf.where(h >= 1.0, 0.0, h)
    c = s * v
    m = v - c
    dh = h * 6.0
    sector = tf.floor(dh)
    xx = c * (1.0 - tf.abs(dh - 2.0 * tf.floor(dh * 0.5) - 1.0))
    out = []
    for centre in (5.5, 1.5, 3.5):  # r, g, b: c, x or 0 by the sector's distance round the ring of six
        d = tf.abs(sector - centre)
        d = tf.where(d > 3.0, 6.0 - d, d)
        out.append(_clip01(tf.where(d < 1.0, c, tf.where(d < 2.0, xx, 0.0)) + m))
    return tf.stack(out, axis=-1)


def _grayscale(x):
    import tensorflow as tf

    r, g, b = _channels(x)
    y = 0.2989 * r + 0.5870 * g + 0.1140 * b  # tf.image.rgb_to_grayscale's weights
    return tf.stack([y, y, y], axis=-1)


def _blur(x, sigma, radius: int):
    """Separable Gaussian blur, taps -radius..radius normalised to sum 1, zero padding (borders darken),
    horizontal pass then vertical pass, taps accumulated in order as the engine does."""
    import tensorflow as tf

    j = tf.range(-radius, radius + 1, dtype=tf.float32)
    s = tf.reshape(sigma, [-1, 1])
    w = tf.exp(-(j * j)[None, :] / (2.0 * s * s))
    w = w / tf.reduce_sum(w, axis=1, keepdims=True)  # [B, 2r + 1]

    def one_pass(t, axis):
        n = t.shape[axis]
        pad = [[0, 0]] * 5
        pad[axis] = [radius, radius]
        padded = tf.pad(t, pad)
        acc = None
        for k in range(2 * radius + 1):
            tap = padded[:, :, :, k:k + n, :] if axis == 3 else padded[:, :, k:k + n, :, :]
            term = tf.reshape(w[:, k], [-1, 1, 1, 1, 1]) * tap
            acc = term if acc is None else acc + term
        return acc

    return one_pass(one_pass(x, 3), 2)


def device_augment(views, colour):
    """views: uint8 [B, T, S, S, 3] (the engine's device-mode views); colour: float32 [B, K] (its colour
    parameters, layout `COLOUR_FIELDS`). Returns float32 [B, T, S, S, 3] in [0, 1]: the host mode's float
    output for the same seed, within 1/255."""
    import tensorflow as tf

    views = tf.convert_to_tensor(views)
    colour = tf.convert_to_tensor(colour, tf.float32)
    if views.dtype != tf.uint8 or views.shape.rank != 5 or views.shape[-1] != 3:
        raise ValueError(f"device_augment: views must be uint8 [B, T, S, S, 3], got {views.dtype.name} "
                         f"{views.shape}")
    if colour.shape.rank != 2 or colour.shape[-1] != NUM_COLOUR_PARAMS:
        raise ValueError(f"device_augment: colour must be float32 [B, {NUM_COLOUR_PARAMS}], got {colour.shape}")
    crop = views.shape[2]
    if crop is None or views.shape[3] != crop:
        raise ValueError(f"device_augment: views must be square with a static size, got {views.shape}")
    x = tf.cast(views, tf.float32) * (1.0 / 255.0)

    def field(name):
        return colour[:, _F[name]]

    on = field("jitter") > 0.5
    identity = {BRIGHTNESS: 1.0, CONTRAST: 1.0, SATURATION: 1.0, HUE: 0.0}
    factors = {BRIGHTNESS: field("brightness"), CONTRAST: field("contrast"), SATURATION: field("saturation"),
               HUE: field("hue")}
    ops = {BRIGHTNESS: _brightness, CONTRAST: _contrast, SATURATION: _saturation, HUE: _hue}
    for slot in range(4):
        op_here = tf.cast(tf.round(field(f"order_{slot}")), tf.int32)
        for op in (BRIGHTNESS, CONTRAST, SATURATION, HUE):
            active = on & tf.equal(op_here, op)
            x = ops[op](x, tf.where(active, factors[op], identity[op]))
    x = tf.where(_per_clip(field("grayscale")) > 0.5, _grayscale(x), x)
    blur = field("blur") > 0.5
    radius = blur_radius(crop)
    if radius > 0:
        sigma = tf.where(blur, field("blur_sigma"), 1.0)  # any sigma > 0 where the clip is not blurred
        x = tf.where(_per_clip(tf.cast(blur, tf.float32)) > 0.5, _blur(x, sigma, radius), x)
    x = tf.where(_per_clip(field("solarize")) > 0.5, tf.minimum(x, 1.0 - x), x)
    return _clip01(x)


__all__ = ["device_augment", "colour_params", "COLOUR_FIELDS", "NUM_COLOUR_PARAMS", "blur_radius"]
