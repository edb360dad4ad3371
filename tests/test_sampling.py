"""Temporal sampling (cvrl.md §1), crop boxes (cvrl.md §2.3), parameter draws and the fixed-rate index space."""
import numpy as np
import pytest
from scipy import stats

from cvrl_fast import _C
from cvrl_fast._augment import AugmentConfig, sample_params


def _interval_pmf(m):
    k = np.arange(m)
    return (2 * (m - k) - 1) / m**2


def test_interval_distribution_matches_spec_pmf():
    m, n = 220, 200_000
    draws = _C.sample_intervals(m, 7, n)
    assert draws.min() >= 0 and draws.max() <= m - 1
    observed = np.bincount(draws, minlength=m)
    expected = _interval_pmf(m) * n
    # Pool bins so each expects >= 20 counts, then chi-square goodness of fit.
    obs_p, exp_p, acc_o, acc_e = [], [], 0, 0.0
    for o, e in zip(observed, expected):
        acc_o += o
        acc_e += e
        if acc_e >= 20:
            obs_p.append(acc_o), exp_p.append(acc_e)
            acc_o, acc_e = 0, 0.0
    obs_p[-1] += acc_o
    exp_p[-1] += acc_e
    _, p_value = stats.chisquare(obs_p, exp_p)
    assert p_value > 1e-4
    assert abs(draws.mean() - 72.83) < 0.3  # cvrl.md §1: (2M-1)(M-1)/(6M) = 72.83 at M = 220
    fifths = np.array([np.mean((draws >= i * m / 5) & (draws < (i + 1) * m / 5)) for i in range(5)])
    np.testing.assert_allclose(fifths, [0.36, 0.28, 0.20, 0.12, 0.04], atol=0.005)


def test_interval_distribution_fails_on_uniform():
    """The chi-square test has power: uniform intervals are rejected."""
    m, n = 220, 200_000
    draws = np.random.default_rng(0).integers(0, m, n)
    _, p_value = stats.chisquare(np.bincount(draws, minlength=m), _interval_pmf(m) * n)
    assert p_value < 1e-10


def test_interval_small_ranges():
    assert set(_C.sample_intervals(1, 3, 1000)) == {0}
    d = _C.sample_intervals(2, 3, 40_000)
    assert abs(np.mean(d == 0) - 0.75) < 0.01  # pmf (2M-1)/M^2 = 3/4 at k = 0


def test_interval_fails():
    with pytest.raises(ValueError, match="offset range"):
        _C.sample_intervals(0, 3, 1)


def _plans(num_frames, count, cfg=None, seed=0):
    return [sample_params(num_frames, 32, 32, seed, index=i, config=cfg) for i in range(count)]


def test_clip_starts_long_video():
    cfg = AugmentConfig(crop_size=8)
    plans = _plans(250, 3000, cfg)
    for p in plans:
        m, delta, a, b = p["offset_range"], p["interval"], p["start_a"], p["start_b"]
        assert m == 250 - 30 and 0 <= delta < m
        assert 0 <= a < m - delta and b == a + delta  # exclusive upper bound
        first, second = (b, a) if p["swapped"] else (a, b)
        assert p["view1"]["indices"] == [first + 2 * k for k in range(16)]
        assert p["view2"]["indices"] == [second + 2 * k for k in range(16)]
        assert max(p["view1"]["indices"] + p["view2"]["indices"]) <= 249
    swapped = np.mean([p["swapped"] for p in plans])
    assert abs(swapped - 0.5) < 0.04
    # Start of the first clip is uniform given delta: the normalised position a / (M - delta) is U[0,1).
    u = np.array([p["start_a"] / (p["offset_range"] - p["interval"]) for p in plans])
    assert stats.kstest(u, "uniform").pvalue > 1e-4


def test_clip_starts_short_video_wrap_around():
    cfg = AugmentConfig(crop_size=8)
    plans = _plans(20, 2000, cfg)
    starts = []
    for p in plans:
        assert p["offset_range"] == 20
        for view in ("view1", "view2"):
            idx = p[view]["indices"]
            assert idx == [(idx[0] + 2 * k) % 20 for k in range(16)]  # loops, never pads
        starts += [p["start_a"], p["start_b"]]
    counts = np.bincount(starts, minlength=20)
    assert len(counts) == 20 and stats.chisquare(counts).pvalue > 1e-4
    # Independent starts: about 1/20 of pairs share a start.
    same = np.mean([p["start_a"] == p["start_b"] for p in plans])
    assert 0.02 < same < 0.09


def test_boundary_length_31_is_long():
    p = sample_params(31, 32, 32, 0, config=AugmentConfig(crop_size=8))
    assert p["offset_range"] == 1 and p["interval"] == 0 and p["start_a"] == 0
    p = sample_params(30, 32, 32, 0, config=AugmentConfig(crop_size=8))
    assert p["offset_range"] == 30  # L <= (T-1)s: short video


def test_draws_are_pure_functions_of_seed_epoch_index():
    a = sample_params(250, 256, 340, 1, epoch=2, index=17)
    assert a == sample_params(250, 256, 340, 1, epoch=2, index=17)
    for other in [dict(epoch=3, index=17), dict(epoch=2, index=18)]:
        assert a != sample_params(250, 256, 340, 1, **other)
    assert a != sample_params(250, 256, 340, 2, epoch=2, index=17)
    # Colour draws do not depend on the frame size (separate streams for crop and colour).
    b = sample_params(250, 480, 640, 1, epoch=2, index=17)
    assert {k: v for k, v in a["view1"].items() if k != "crop"} == {k: v for k, v in b["view1"].items() if k != "crop"}


def test_view_params_probabilities():
    draws = _plans(250, 4000, AugmentConfig(crop_size=8), seed=3)
    v1, v2 = [d["view1"] for d in draws], [d["view2"] for d in draws]
    rate = lambda views, key: np.mean([v[key] for v in views])  # noqa: E731
    assert rate(v1, "blur") == 1.0 and abs(rate(v2, "blur") - 0.1) < 0.02
    assert rate(v1, "solarize") == 0.0 and abs(rate(v2, "solarize") - 0.2) < 0.02
    for key, p in [("flip", 0.5), ("jitter", 0.8), ("grayscale", 0.2)]:
        assert abs(rate(v1 + v2, key) - p) < 0.02
    for key, lo, hi in [("brightness", 0.2, 1.8), ("contrast", 0.2, 1.8), ("saturation", 0.2, 1.8),
                        ("hue", -0.2, 0.2), ("blur_sigma", 0.1, 2.0)]:
        values = np.array([v[key] for v in v1 + v2])
        assert values.min() >= lo and values.max() <= hi
        assert stats.kstest((values - lo) / (hi - lo), "uniform").pvalue > 1e-4
    orders = {v["jitter_order"] for v in v1 + v2}
    assert len(orders) == 24  # every permutation of the four jitter ops occurs


def _check_box(box, h, w, cfg):
    x, y, bw, bh = box
    assert 0 < bw <= w and 0 < bh <= h
    assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
    area = bw * bh / (h * w)
    if (bw, bh) != (w, h):
        assert cfg.area_range[0] - 1e-6 <= area <= cfg.area_range[1] + 1e-6
    if bw < w:
        assert x < w - bw  # exclusive bound: the last position is never chosen
    else:
        assert x == 0


@pytest.mark.parametrize("h,w", [(256, 340), (240, 320), (57, 75), (480, 270)])
def test_crop_boxes_follow_constraints(h, w):
    cfg = AugmentConfig()
    boxes = _C.sample_crop_boxes(h, w, cfg._native(), 5, 5000)
    for b in boxes:
        _check_box(tuple(b), h, w, cfg)
    widths, heights, xs = boxes[:, 2], boxes[:, 3], boxes[:, 0]
    aspect = widths / heights
    assert aspect.min() > 0.5 * 0.9 and aspect.max() < 2.0 * 1.1  # rounding of w = rint(h a)
    # Largest offset reached for the most common width is w - width - 1, never w - width.
    common = np.bincount(widths).argmax()
    if common < w:
        assert xs[widths == common].max() <= w - common - 1


def test_crop_boxes_match_tf_sample_distorted_bounding_box():
    """Same distribution as TF's op (the reference): two-sample KS on area, aspect and offsets."""
    tf = pytest.importorskip("tensorflow")
    h, w, n = 256, 340, 3000
    ours = _C.sample_crop_boxes(h, w, AugmentConfig()._native(), 9, n).astype(np.float64)

    @tf.function
    def draw(seeds):
        def one(seed):
            begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
                [h, w, 3], bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
                min_object_covered=0.1, aspect_ratio_range=(0.5, 2.0), area_range=(0.3, 1.0),
                max_attempts=100, use_image_if_no_bounding_boxes=True)
            return tf.stack([begin[1], begin[0], size[1], size[0]])
        return tf.map_fn(one, seeds, fn_output_signature=tf.int32)

    seeds = tf.stack([tf.range(n), tf.fill([n], 123)], axis=1)
    theirs = draw(seeds).numpy().astype(np.float64)
    for name, f in [("area", lambda b: b[:, 2] * b[:, 3]), ("aspect", lambda b: b[:, 2] / b[:, 3]),
                    ("height", lambda b: b[:, 3]),
                    ("x offset", lambda b: b[:, 0] / np.maximum(w - b[:, 2], 1)),
                    ("y offset", lambda b: b[:, 1] / np.maximum(h - b[:, 3], 1))]:
        p = stats.ks_2samp(f(ours), f(theirs)).pvalue
        assert p > 1e-4, f"{name}: KS p = {p}"


def test_crop_box_falls_back_to_full_frame():
    # A 1-pixel-tall strip: no box with aspect in [0.5, 2] covers 30% of it.
    boxes = _C.sample_crop_boxes(1, 1000, AugmentConfig()._native(), 0, 10)
    assert all(tuple(b) == (0, 0, 1000, 1) for b in boxes)


def test_crop_box_full_area_range_is_full_frame_sometimes():
    cfg = AugmentConfig(area_range=(1.0, 1.0), aspect_ratio_range=(1.0, 1.0))
    boxes = _C.sample_crop_boxes(100, 100, cfg._native(), 0, 20)
    assert all(tuple(b) == (0, 0, 100, 100) for b in boxes)


def test_crop_boxes_fail():
    with pytest.raises(ValueError, match="frame size"):
        _C.sample_crop_boxes(0, 10, AugmentConfig()._native(), 0, 1)


@pytest.mark.parametrize("field,value,match", [
    ("area_range", (0.5, 0.2), "area_range"), ("aspect_ratio_range", (0.0, 1.0), "aspect_ratio_range"),
    ("flip_prob", 1.5, "flip_prob"), ("blur_prob", (1.0, -0.1), "blur_prob"), ("num_frames", 0, "num_frames"),
    ("hue", 0.7, "hue"), ("target_fps", 0.0, "target_fps"), ("blur_sigma_range", (0.0, 1.0), "blur_sigma"),
    ("crop_size", 2.5, "crop_size"), ("area_range", (0.3,), "area_range"),
])
def test_augment_config_fails(field, value, match):
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**{field: value})


def test_augment_config_defaults_are_spec_values():
    c = AugmentConfig()
    assert (c.num_frames, c.frame_stride, c.crop_size, c.target_fps) == (16, 2, 224, 25.0)
    assert c.area_range == (0.3, 1.0) and c.aspect_ratio_range == (0.5, 2.0) and c.max_attempts == 100
    assert (c.flip_prob, c.jitter_prob, c.grayscale_prob) == (0.5, 0.8, 0.2)
    assert c.blur_prob == (1.0, 0.1) and c.solarize_prob == (0.0, 0.2) and c.blur_sigma_range == (0.1, 2.0)
    assert (c.brightness, c.contrast, c.saturation, c.hue) == (0.8, 0.8, 0.8, 0.2)


# ---- fixed-rate index space ----

def test_fixed_rate_map_resamples_by_timestamp():
    for native in (24.0, 25.0, 30.0, 60.0):
        pts = [i / native for i in range(int(10 * native))]
        m = _C.fixed_rate_frame_map(pts, 25.0)
        assert len(m) == 250  # 10 s at 25 fps regardless of the native rate
        for i in (0, 1, 7, 100, 249):
            t = i / 25.0
            assert pts[m[i]] <= t + 1e-9 and (m[i] + 1 == len(pts) or pts[m[i] + 1] > t + 1e-9)


def test_fixed_rate_map_variable_frame_rate():
    pts = [0.0, 0.04, 0.2, 0.21, 0.25, 0.5]  # gaps of 40, 160, 10, 40, 250 ms
    m = _C.fixed_rate_frame_map(pts, 25.0)
    # The last frame lasts the median gap (40 ms): span 0.54 s -> 13 index-space frames.
    assert m == [0, 1, 1, 1, 1, 2, 3, 4, 4, 4, 4, 4, 4]


def test_fixed_rate_map_native_is_identity():
    assert _C.fixed_rate_frame_map([0.0, 0.1, 0.3], 0.0) == [0, 1, 2]


def test_fixed_rate_map_fails():
    with pytest.raises(ValueError, match="no decodable frames"):
        _C.fixed_rate_frame_map([], 25.0)
    with pytest.raises(ValueError, match="ascending"):
        _C.fixed_rate_frame_map([0.0, 0.2, 0.1], 25.0)
