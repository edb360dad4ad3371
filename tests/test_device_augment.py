"""The colour stage as TensorFlow ops (`cvrl_fast._device_augment`) against the host engine's C++ path.

The oracle is the engine's host mode (`apply_view`, the code every training pair goes through, itself
tested against TensorFlow's own ops in test_augment.py): the device-mode view is the host path with the
colour stage off (crop, resize truncated to uint8, flip), and device_augment of it must equal the host's
float output within 1/255, for each op alone and for the whole pipeline, eagerly and under XLA.
"""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from cvrl_fast import VideoReader  # noqa: E402
from cvrl_fast._augment import AugmentConfig, apply_view, sample_params  # noqa: E402
from cvrl_fast._device_augment import (COLOUR_FIELDS, NUM_COLOUR_PARAMS, blur_radius, colour_params,  # noqa: E402
                                       device_augment)

TOL = 1.0 / 255.0
CFG = AugmentConfig(num_frames=6, crop_size=48)
COLOUR_OFF = {"jitter": False, "grayscale": False, "blur": False, "solarize": False}
BASE = {"flip": False, "jitter": False, "brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0,
        "jitter_order": ("brightness", "contrast", "saturation", "hue"), "grayscale": False, "blur": False,
        "blur_sigma": 1.0, "solarize": False}


@pytest.fixture(scope="module")
def frames(clip_dir):
    """Six frames of a real clip whose brightness changes over time (so a per-frame contrast mean differs
    from the clip-wide one), plus its size."""
    with VideoReader(str(clip_dir / "bikes.mp4")) as r:
        out = r.get_frames([0, 40, 80, 120, 160, 200])
    out = out.astype(np.float32)
    out *= np.linspace(0.5, 1.2, len(out), dtype=np.float32)[:, None, None, None]
    return np.clip(out, 0, 255).astype(np.uint8)


def _view(frames, **params):
    h, w = frames.shape[1:3]
    return dict(BASE, crop=(w // 8, h // 10, w // 2, h // 2), **params)


def _host_and_device_inputs(frames, view):
    device_view = apply_view(frames, dict(view, **COLOUR_OFF), CFG)
    host = apply_view(frames, view, CFG, float_output=True)
    return device_view, host


def _run(device_view, view, jit=False):
    fn = tf.function(device_augment, jit_compile=True) if jit else device_augment
    return fn(device_view[None], colour_params(view)[None]).numpy()[0]


ORDERED = ("contrast", "brightness", "hue", "saturation")
STRONG_JITTER = dict(jitter=True, brightness=1.7, contrast=0.35, saturation=1.8, hue=0.17, jitter_order=ORDERED)
ALONE = {
    "brightness": dict(jitter=True, brightness=1.6),
    "contrast": dict(jitter=True, contrast=1.7),
    "saturation": dict(jitter=True, saturation=0.3),
    "hue": dict(jitter=True, hue=-0.18),
    "grayscale": dict(grayscale=True),
    "blur_small_sigma": dict(blur=True, blur_sigma=0.4),
    "blur": dict(blur=True, blur_sigma=1.9),
    "solarize": dict(solarize=True),
    "everything": dict(STRONG_JITTER, grayscale=True, blur=True, blur_sigma=1.3, solarize=True, flip=True),
}


@pytest.mark.parametrize("name", sorted(ALONE))
def test_device_augment_matches_host(frames, name):
    view = _view(frames, **ALONE[name])
    device_view, host = _host_and_device_inputs(frames, view)
    assert device_view.dtype == np.uint8 and device_view.shape == (6, 48, 48, 3)
    out = _run(device_view, view)
    assert out.dtype == np.float32 and out.shape == host.shape
    assert np.abs(out - host).max() <= TOL, name
    assert np.abs(host - device_view / 255.0).max() > 4 * TOL or name == "blur_small_sigma"  # the op did work


def test_device_augment_matches_host_under_xla_and_batched(frames, clip_dir):
    """Drawn parameters (the loader's own draw for 8 samples, both views, mixed coins), one batched call,
    eagerly and compiled: each row equals its host output."""
    with VideoReader(str(clip_dir / "film1906.mp4")) as r:
        n, h, w = r.num_frames, r.height, r.width
        views, colours, hosts = [], [], []
        for index in range(4):
            p = sample_params(n, h, w, seed=11, index=index, config=CFG)
            for v in (p["view1"], p["view2"]):
                unique = sorted(set(v["indices"]))
                pos = {f: i for i, f in enumerate(unique)}
                clip = r.get_frames(unique)[[pos[i] for i in v["indices"]]]
                device_view, host = _host_and_device_inputs(clip, v)
                views.append(device_view)
                colours.append(colour_params(v))
                hosts.append(host)
    views, colours, hosts = np.stack(views), np.stack(colours), np.stack(hosts)
    assert colours.shape == (8, NUM_COLOUR_PARAMS) and len(set(map(tuple, colours))) == 8
    for jit in (False, True):
        fn = tf.function(device_augment, jit_compile=True) if jit else device_augment
        out = fn(views, colours).numpy()
        assert np.abs(out - hosts).max() <= TOL, jit


def _per_frame_contrast(x, factor):
    """The mistake to catch: each frame's own mean instead of the clip's."""
    mean = x.mean(axis=(1, 2), keepdims=True)
    return np.clip((x - mean) * factor + mean, 0, 1)


def test_device_augment_matches_host_fails_for_a_dropped_reordered_or_per_frame_op(frames):
    """The comparison is sharp enough to catch each mistake: the host output is more than 1/255 away from
    the result of a dropped op, of another op order, and of per-frame contrast statistics."""
    view = _view(frames, **STRONG_JITTER, grayscale=False, blur=True, blur_sigma=1.5, solarize=True)
    device_view, host = _host_and_device_inputs(frames, view)
    assert np.abs(_run(device_view, view) - host).max() <= TOL
    mistakes = {
        "jitter dropped": dict(view, jitter=False),
        "blur dropped": dict(view, blur=False),
        "solarize dropped": dict(view, solarize=False),
        "order reversed": dict(view, jitter_order=tuple(reversed(ORDERED))),
        "two ops swapped": dict(view, jitter_order=("brightness", "contrast", "hue", "saturation")),
    }
    for what, wrong in mistakes.items():
        assert np.abs(_run(device_view, wrong) - host).max() > 4 * TOL, what
    contrast_only = _view(frames, jitter=True, contrast=1.8)
    device_view, host = _host_and_device_inputs(frames, contrast_only)
    per_frame = _per_frame_contrast(device_view / np.float32(255), 1.8)
    assert np.abs(per_frame - host).max() > 4 * TOL
    assert np.abs(_run(device_view, contrast_only) - host).max() <= TOL


def test_colour_params_layout():
    v = dict(BASE, jitter=True, brightness=1.2, contrast=0.7, saturation=1.1, hue=-0.05,
             jitter_order=("hue", "contrast", "brightness", "saturation"), grayscale=True, blur=True,
             blur_sigma=0.8, solarize=True)
    got = dict(zip(COLOUR_FIELDS, colour_params(v)))
    assert got == pytest.approx({"jitter": 1, "brightness": 1.2, "contrast": 0.7, "saturation": 1.1, "hue": -0.05,
                                 "order_0": 3, "order_1": 1, "order_2": 0, "order_3": 2, "grayscale": 1, "blur": 1,
                                 "blur_sigma": 0.8, "solarize": 1})
    assert [blur_radius(s) for s in (224, 112, 48, 32, 9)] == [11, 5, 2, 1, 0]


def test_colour_params_layout_fails():
    with pytest.raises(ValueError, match="views must be uint8"):
        device_augment(np.zeros((1, 2, 8, 8, 3), np.float32), np.zeros((1, NUM_COLOUR_PARAMS), np.float32))
    with pytest.raises(ValueError, match="colour must be float32"):
        device_augment(np.zeros((1, 2, 8, 8, 3), np.uint8), np.zeros((1, 5), np.float32))
