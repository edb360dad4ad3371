"""Every augmentation op against TensorFlow's own ops on the same parameters (cvrl.md §2.2/§2.3).

The C++ pipeline must match the reference's TF arithmetic to max |diff| <= 1/255 after rounding.
"""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from cvrl_fast._augment import AugmentConfig, apply_view, sample_params  # noqa: E402

_OPS = ("brightness", "contrast", "saturation", "hue")


def _frames(num_frames, height, width, seed=0):
    """Smooth colourful frames plus noise: exercises every hue sector and saturation level."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((num_frames, height, width, 3), np.float32)
    for t in range(num_frames):
        for c in range(3):
            phase = rng.uniform(0, 2 * np.pi)
            out[t, :, :, c] = 127.5 + 110 * np.sin(xx / (7 + 3 * c) + yy / (11 + c) + phase + t)
    out += rng.normal(0, 12, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def _plain(crop, **kw):
    p = {"crop": crop, "flip": False, "jitter": False, "brightness": 1.0, "contrast": 1.0, "saturation": 1.0,
         "hue": 0.0, "jitter_order": _OPS, "grayscale": False, "blur": False, "blur_sigma": 1.0,
         "solarize": False}
    p.update(kw)
    return p


def tf_reference(frames, p, cfg):
    """The reference pipeline written with TF ops (SimCLR/CVRL preprocessing)."""
    size = cfg.crop_size
    x, y, w, h = p["crop"]
    clip = tf.constant(frames[:, y:y + h, x:x + w])
    clip = tf.image.resize(clip, [size, size], method="bilinear", antialias=False)
    if cfg.parity:
        clip = tf.cast(clip, tf.uint8)  # truncation, as the reference does
        clip = tf.image.convert_image_dtype(clip, tf.float32)
    else:
        clip = clip / 255.0
    if p["flip"]:
        clip = tf.image.flip_left_right(clip)
    if p["jitter"]:
        for op in p["jitter_order"]:
            if op == "brightness":
                clip = clip * p["brightness"]
            elif op == "contrast":
                t, hh, ww, _ = clip.shape
                clip = tf.reshape(tf.image.adjust_contrast(tf.reshape(clip, [t * hh, ww, 3]), p["contrast"]),
                                  [t, hh, ww, 3])
            elif op == "saturation":
                clip = tf.image.adjust_saturation(clip, p["saturation"])
            elif op == "hue":
                clip = tf.image.adjust_hue(clip, p["hue"])
            clip = tf.clip_by_value(clip, 0.0, 1.0)
    if p["grayscale"]:
        clip = tf.tile(tf.image.rgb_to_grayscale(clip), [1, 1, 1, 3])
    if p["blur"]:
        radius = (size // 10) // 2
        xs = tf.range(-radius, radius + 1, dtype=tf.float32)
        k = tf.exp(-tf.square(xs) / (2.0 * float(p["blur_sigma"]) ** 2))
        k = k / tf.reduce_sum(k)
        kh = tf.tile(tf.reshape(k, [1, -1, 1, 1]), [1, 1, 3, 1])
        kv = tf.tile(tf.reshape(k, [-1, 1, 1, 1]), [1, 1, 3, 1])
        clip = tf.nn.depthwise_conv2d(clip, kh, strides=[1, 1, 1, 1], padding="SAME")
        clip = tf.nn.depthwise_conv2d(clip, kv, strides=[1, 1, 1, 1], padding="SAME")
    if p["solarize"]:
        clip = tf.where(clip < 0.5, clip, 1.0 - clip)
    clip = tf.clip_by_value(clip, 0.0, 1.0)
    return np.round(clip.numpy() * 255.0).astype(np.int32)


def _check(frames, p, cfg):
    ours = apply_view(frames, p, cfg).astype(np.int32)
    ref = tf_reference(frames, p, cfg)
    assert ours.shape == ref.shape
    diff = np.abs(ours - ref)
    assert diff.max() <= 1, f"max |diff| = {diff.max()} (uint8 units) for {p}"
    return ours


CFG = AugmentConfig(num_frames=3, crop_size=40)
FRAMES = _frames(3, 57, 75)
CROP = (5, 7, 61, 43)


@pytest.mark.parametrize("crop", [CROP, (0, 0, 75, 57), (70, 50, 5, 7), (10, 3, 40, 40)])
def test_resize_matches_tf(crop):
    _check(FRAMES, _plain(crop), CFG)


def test_resize_without_truncation_matches_tf():
    _check(FRAMES, _plain(CROP), AugmentConfig(num_frames=3, crop_size=40, parity=False))


def test_resize_truncates_like_reference():
    """Parity mode floors the float resize; without parity it rounds, so some pixels differ by one."""
    a = apply_view(FRAMES, _plain(CROP), CFG).astype(int)
    b = apply_view(FRAMES, _plain(CROP), AugmentConfig(num_frames=3, crop_size=40, parity=False)).astype(int)
    assert np.all((b - a >= 0) & (b - a <= 1)) and np.any(b != a)


def test_flip_matches_tf():
    out = _check(FRAMES, _plain(CROP, flip=True), CFG)
    np.testing.assert_array_equal(out, apply_view(FRAMES, _plain(CROP), CFG)[:, :, ::-1])


@pytest.mark.parametrize("op,field,value", [
    ("brightness", "brightness", 0.37), ("brightness", "brightness", 1.71),
    ("contrast", "contrast", 0.25), ("contrast", "contrast", 1.66),
    ("saturation", "saturation", 0.3), ("saturation", "saturation", 1.8),
    ("hue", "hue", -0.19), ("hue", "hue", 0.13),
])
def test_jitter_op_matches_tf(op, field, value):
    _check(FRAMES, _plain(CROP, jitter=True, jitter_order=(op,) * 1 + tuple(o for o in _OPS if o != op),
                          **{field: value}), CFG)


def test_contrast_uses_clip_wide_mean():
    """The mean is over all T*H*W pixels: a dark frame next to a bright one moves with the clip mean."""
    frames = np.concatenate([np.full((1, 20, 20, 3), 40, np.uint8), np.full((1, 20, 20, 3), 200, np.uint8)])
    cfg = AugmentConfig(num_frames=2, crop_size=20)
    out = _check(frames, _plain((0, 0, 20, 20), jitter=True, contrast=0.5,
                                jitter_order=("contrast", "brightness", "saturation", "hue")), cfg)
    # Clip mean 120: 40 -> 80, 200 -> 160 (a per-frame mean would leave both unchanged).
    assert abs(int(out[0, 0, 0, 0]) - 80) <= 1 and abs(int(out[1, 0, 0, 0]) - 160) <= 1


def test_jitter_all_ops_random_order_matches_tf():
    for order in [("hue", "saturation", "contrast", "brightness"), ("contrast", "hue", "brightness", "saturation")]:
        _check(FRAMES, _plain(CROP, jitter=True, brightness=1.3, contrast=0.6, saturation=1.5, hue=0.07,
                              jitter_order=order), CFG)


def test_grayscale_matches_tf():
    out = _check(FRAMES, _plain(CROP, grayscale=True), CFG)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


@pytest.mark.parametrize("sigma", [0.1, 0.83, 2.0])
def test_blur_matches_tf_zero_padding(sigma):
    _check(FRAMES, _plain(CROP, blur=True, blur_sigma=sigma), CFG)


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_grayscale_then_blur_matches_tf(sigma):
    """Grayscale leaves r = g = b, so the blur runs on one plane and copies it: same result as TF's three."""
    cfg = AugmentConfig(num_frames=2)
    frames = _frames(2, 256, 340, seed=4)
    p = _plain((20, 10, 300, 230), grayscale=True, blur=True, blur_sigma=sigma, solarize=True)
    out = _check(frames, p, cfg)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def _point_blur(sigma):
    """A single white pixel blurred at the reference size (224, 23 taps), unrounded: tap j's weight shows at
    column 112 + j of row 112."""
    frames = np.zeros((1, 224, 224, 3), np.uint8)
    frames[0, 112, 112] = 255
    return apply_view(frames, _plain((0, 0, 224, 224), blur=True, blur_sigma=sigma),
                      AugmentConfig(num_frames=1, parity=False), float_output=True)


def test_blur_flushes_denormals_like_tf():
    """TF runs its kernels with denormals flushed to zero, so at sigma 0.5 the reference's taps from 7 on
    (exp(-98) = 2.7e-43) are 0; ours must be too (and on Intel CPUs a denormal costs a microcode assist
    per op: the sigma-0.5 blur ran 10x slower before the flush)."""
    out = _point_blur(0.5)
    tiny = np.finfo(np.float32).tiny
    assert not np.any((out > 0) & (out < tiny)), "denormal values in the blur output"
    row = out[0, 112, 112:124, 0]
    assert row[6] > 0 and np.all(row[7:] == 0), row  # tap 6 (5e-32) is a normal float and stays
    k = np.exp(-np.arange(12, dtype=np.float32) ** 2 / np.float32(2 * 0.5 ** 2))
    ref = tf.exp(-tf.square(tf.range(0, 12, dtype=tf.float32)) / (2.0 * 0.5 ** 2)).numpy()
    assert np.all(ref[7:] == 0) and 0 < k[7] < tiny  # tap 7: TF's exp flushes it, NumPy's (no flush) does not


def test_blur_flushes_denormals_only_inside_the_call():
    """The flush is scoped to one clip: the calling thread's float mode is restored (NumPy in the same
    thread still produces denormals afterwards)."""
    _point_blur(0.5)
    assert np.float32(1e-38) / np.float32(10) > 0


def test_blur_darkens_borders():
    frames = np.full((1, 50, 50, 3), 200, np.uint8)
    out = apply_view(frames, _plain((0, 0, 50, 50), blur=True, blur_sigma=2.0), AugmentConfig(num_frames=1,
                                                                                             crop_size=50))
    assert out[0, 25, 25, 0] == 200 and out[0, 0, 0, 0] < 150  # zero padding, not edge replication


def test_solarize_matches_tf():
    _check(FRAMES, _plain(CROP, solarize=True), CFG)


def test_full_random_draws_match_tf():
    """The loader's own parameter draws, every op enabled by its coins, at two sizes."""
    cfg = AugmentConfig(num_frames=3, crop_size=40, jitter_prob=0.9, grayscale_prob=0.3,
                        blur_prob=(1.0, 0.5), solarize_prob=(0.5, 0.5))
    for index in range(6):
        draw = sample_params(100, 57, 75, seed=11, index=index, config=cfg)
        for view in ("view1", "view2"):
            _check(FRAMES, draw[view], cfg)


def test_default_size_224_matches_tf():
    cfg = AugmentConfig(num_frames=2)
    frames = _frames(2, 256, 340, seed=3)
    draw = sample_params(250, 256, 340, seed=5, config=cfg)
    p = dict(draw["view1"], jitter=True, blur=True, blur_sigma=1.3, solarize=True)
    _check(frames, p, cfg)


def test_still_frames_give_identical_output_frames():
    """Temporal consistency: one draw per clip, so a still clip stays still after every op."""
    still = np.repeat(_frames(1, 57, 75), 5, axis=0)
    cfg = AugmentConfig(num_frames=5, crop_size=32, jitter_prob=1.0, grayscale_prob=0.0, solarize_prob=(1, 1))
    for index in range(4):
        draw = sample_params(100, 57, 75, seed=2, index=index, config=cfg)
        for view in ("view1", "view2"):
            out = apply_view(still, draw[view], cfg)
            assert all(np.array_equal(out[0], out[t]) for t in range(1, 5))


def test_float_output_is_unrounded_uint8_output():
    p = _plain(CROP, jitter=True, brightness=1.2, blur=True, blur_sigma=0.7)
    f = apply_view(FRAMES, p, CFG, float_output=True)
    u = apply_view(FRAMES, p, CFG)
    assert f.dtype == np.float32 and f.min() >= 0 and f.max() <= 1
    np.testing.assert_array_equal(np.floor(f * 255 + 0.5).astype(np.uint8), u)


def test_apply_view_fails():
    with pytest.raises(ValueError, match="crop box lies outside"):
        apply_view(FRAMES, _plain((70, 50, 10, 10)), CFG)
    with pytest.raises(ValueError, match="uint8"):
        apply_view(FRAMES.astype(np.float32), _plain(CROP), CFG)
    with pytest.raises(ValueError, match="jitter_order"):
        apply_view(FRAMES, _plain(CROP, jitter=True, jitter_order=(0, 1, 2, 7)), CFG)
