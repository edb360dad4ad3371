"""augment_on="device" in the engine: `sample_pair`, `PairLoader` and `data.pretrain_dataset` give uint8
views without the colour stage plus each clip's colour parameters; `device_augment` of them equals the
host mode's float32 output for the same seed within 1/255, on real mp4 clips and on reference TFRecords.

The oracle is host mode (the path every training pair takes, tested against TensorFlow's own ops in
test_augment.py); the colour rows are checked against the drawn parameters through the Python-side
layout (`colour_params`), which is written independently of the engine's `colour_row`.
"""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from cvrl_fast import AugmentConfig, PairLoader, device_augment, sample_pair  # noqa: E402
from cvrl_fast import _C, data  # noqa: E402
from cvrl_fast._device_augment import COLOUR_FIELDS, colour_params  # noqa: E402

TOL = 1.0 / 255.0
NONE = dict(jitter_prob=0.0, grayscale_prob=0.0, blur_prob=(0.0, 0.0), solarize_prob=(0.0, 0.0))
BASE = dict(num_frames=6, crop_size=64)
# One colour op at a time (both views, every clip), then the reference's full pipeline.
ALONE = {
    "brightness": dict(NONE, jitter_prob=1.0, contrast=0.0, saturation=0.0, hue=0.0),
    "contrast": dict(NONE, jitter_prob=1.0, brightness=0.0, saturation=0.0, hue=0.0),
    "saturation": dict(NONE, jitter_prob=1.0, brightness=0.0, contrast=0.0, hue=0.0),
    "hue": dict(NONE, jitter_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.0),
    "grayscale": dict(NONE, grayscale_prob=1.0),
    "blur": dict(NONE, blur_prob=(1.0, 1.0)),
    "solarize": dict(NONE, solarize_prob=(1.0, 1.0)),
    "full": {},
}


@pytest.fixture(scope="module")
def tfrecord(clip_dir, tmp_path_factory):
    from cvrl_fast.tfrecord import write_tfrecord

    path = tmp_path_factory.mktemp("augment_on") / "clips.tfrecord"
    write_tfrecord(str(path), [str(clip_dir / "carphone_pristine.mp4"), str(clip_dir / "bikes.mp4")], fps=25.0)
    return path


def _sources(clip_dir, tfrecord):
    return {"mp4": str(clip_dir / "bikes.mp4"), "mpeg2": str(clip_dir / "cityCC0.mpg"),
            "tfrecord": (str(tfrecord), 0), "tfrecord_1": (str(tfrecord), 1)}


_XLA = tf.function(device_augment, jit_compile=True)  # one trace and compile per input shape


def _device_augment(views, colour, jit):
    return (_XLA if jit else device_augment)(views, colour).numpy()


@pytest.mark.parametrize("op", sorted(ALONE))
def test_sample_pair_device_mode_matches_host(clip_dir, tfrecord, op):
    cfg = AugmentConfig(**BASE, **ALONE[op])
    for name, source in _sources(clip_dir, tfrecord).items():
        for seed in (3, 11):
            h1, h2, host_info = sample_pair(source, seed, cfg, index=5, output_dtype=np.float32, return_params=True)
            d1, d2, c1, c2, dev_info = sample_pair(source, seed, cfg, index=5, augment_on="device",
                                                   return_params=True)
            assert host_info == dev_info, (name, seed)  # the same draws
            assert d1.dtype == np.uint8 and d1.shape == h1.shape
            assert c1.dtype == np.float32 and c1.shape == (len(COLOUR_FIELDS),)
            np.testing.assert_array_equal(c1, colour_params(dev_info["view1"]))
            np.testing.assert_array_equal(c2, colour_params(dev_info["view2"]))
            out = _device_augment(np.stack([d1, d2]), np.stack([c1, c2]), jit=(seed == 11))
            for host, got, dev in ((h1, out[0], d1), (h2, out[1], d2)):
                assert np.abs(got - host).max() <= TOL, (op, name, seed)
            # The device views are the geometry only: the host's colour stage changed them.
            if op != "full":
                assert max(np.abs(h - d / 255.0).max() for h, d in ((h1, d1), (h2, d2))) > 4 * TOL, (op, name)


def test_device_views_equal_host_views_without_colour(clip_dir, tfrecord):
    """With every colour op off, host mode's uint8 output is the geometry alone (planar resize, truncation,
    x/255, round(255 x)): device mode's direct uint8 path must give the same bytes, in parity mode and not."""
    for parity in (True, False):
        cfg = AugmentConfig(**BASE, **NONE, parity=parity)
        for name, source in _sources(clip_dir, tfrecord).items():
            for seed in (0, 1, 2):
                h1, h2 = sample_pair(source, seed, cfg, index=seed)
                d1, d2, _, _ = sample_pair(source, seed, cfg, index=seed, augment_on="device")
                np.testing.assert_array_equal(d1, h1, err_msg=f"{name} seed {seed} parity {parity}")
                np.testing.assert_array_equal(d2, h2, err_msg=f"{name} seed {seed} parity {parity}")


def test_sample_pair_device_mode_matches_host_fails(clip_dir, tfrecord):
    """The comparison above catches a device stage that drops an op or uses another clip's parameters,
    and the engine refuses what device mode cannot give."""
    cfg = AugmentConfig(**BASE, **ALONE["hue"])
    source = str(clip_dir / "bikes.mp4")
    h1, _ = sample_pair(source, 3, cfg, output_dtype=np.float32)
    d1, _, c1, c2 = sample_pair(source, 3, cfg, augment_on="device")
    dropped = c1.copy()
    dropped[COLOUR_FIELDS.index("jitter")] = 0.0
    other = c1.copy()
    other[COLOUR_FIELDS.index("hue")] = -c1[COLOUR_FIELDS.index("hue")]
    for wrong in (dropped, other):
        assert np.abs(_device_augment(d1[None], wrong[None], jit=False)[0] - h1).max() > 4 * TOL
    with pytest.raises(ValueError, match="augment_on = 'gpu' must be 'host' or 'device'"):
        sample_pair(source, 3, cfg, augment_on="gpu")
    with pytest.raises(ValueError, match="output_dtype=float32 needs augment_on='host'"):
        sample_pair(source, 3, cfg, augment_on="device", output_dtype=np.float32)
    s = cfg._native()
    with pytest.raises(ValueError, match="augment_on = 'tpu' must be 'host' or 'device'"):
        s.augment_on = "tpu"


def test_colour_row_layout(clip_dir):
    """The engine's colour_row and the Python layout agree field by field on drawn parameters."""
    params = _C.sample_pair_params(300, 272, 640, AugmentConfig()._native(), 7, 0, 0)
    from cvrl_fast._augment import view_params_to_dict

    for v in params.views:
        row = _C.colour_row(v)
        d = view_params_to_dict(v)
        assert row[COLOUR_FIELDS.index("jitter")] == float(d["jitter"])
        assert row[COLOUR_FIELDS.index("blur_sigma")] == np.float32(d["blur_sigma"])
        np.testing.assert_array_equal(row, colour_params(d))


def _loader_sources(clip_dir, tfrecord):
    return [str(clip_dir / "bikes.mp4"), str(clip_dir / "carphone_pristine.mp4"), str(clip_dir / "cityCC0.mpg"),
            str(tfrecord)]


def test_loader_device_mode_matches_host(clip_dir, tfrecord):
    """Host and device loaders over the same mp4 + TFRecord sources: the same videos in the same order,
    device_augment of each device batch equals the host batch within 1/255, and each row equals
    sample_pair's device mode for its (seed, epoch, video)."""
    cfg = AugmentConfig(**BASE)
    sources = _loader_sources(clip_dir, tfrecord)
    kw = dict(batch_size=3, seed=21, num_threads=2, epochs=2, config=cfg)
    with PairLoader(sources, output_dtype=np.float32, **kw) as host, \
            PairLoader(sources, augment_on="device", **kw) as device:
        batches = list(zip(host, device))
    assert len(batches) == 3  # 2 epochs x 5 videos (3 files, 2 records) in whole batches of 3
    refs = _C.index_tfrecord(str(tfrecord))
    by_id = sources[:3] + [(str(tfrecord), k) for k in range(len(refs))]
    for b, (h, d) in enumerate(batches):
        assert set(d) == {"view1", "view2", "colour1", "colour2", "index"} and set(h) == {"view1", "view2", "index"}
        np.testing.assert_array_equal(h["index"], d["index"])
        assert d["view1"].dtype == np.uint8 and d["colour1"].shape == (3, len(COLOUR_FIELDS))
        for view in ("1", "2"):
            out = _device_augment(d["view" + view], d["colour" + view], jit=False)
            assert np.abs(out - h["view" + view]).max() <= TOL, (b, view)
        for row, vid in enumerate(d["index"]):
            epoch = (b * 3 + row) // len(by_id)  # slot // number of videos
            d1, d2, c1, c2 = sample_pair(by_id[vid], 21, cfg, epoch=epoch, index=int(vid), augment_on="device")
            np.testing.assert_array_equal(d["view1"][row], d1)
            np.testing.assert_array_equal(d["colour2"][row], c2)


def test_loader_device_mode_matches_host_fails(clip_dir, tfrecord):
    with pytest.raises(ValueError, match="output_dtype=float32 needs augment_on='host'"):
        PairLoader([str(clip_dir / "bikes.mp4")], batch_size=1, seed=0, augment_on="device",
                   output_dtype=np.float32)
    with pytest.raises(ValueError, match="augment_on = 'cpu' must be 'host' or 'device'"):
        PairLoader([str(clip_dir / "bikes.mp4")], batch_size=1, seed=0, augment_on="cpu")
    with pytest.raises(ValueError, match="augment_on = 'both'"):
        data.pretrain_dataset([str(clip_dir / "bikes.mp4")], batch_size=1, seed=0, augment_on="both")
    # Host mode has no colour rows: a caller cannot mistake its final views for device-mode ones.
    with PairLoader([str(clip_dir / "bikes.mp4")], batch_size=1, seed=0, epochs=1,
                    config=AugmentConfig(**BASE)) as host:
        assert "colour1" not in next(host)


def test_pretrain_dataset_device_mode(clip_dir, tfrecord):
    cfg = AugmentConfig(**BASE)
    sources = _loader_sources(clip_dir, tfrecord)
    ds = data.pretrain_dataset(sources, batch_size=2, seed=4, config=cfg, epochs=1, augment_on="device")
    spec = ds.element_spec
    assert spec["view1"].dtype == tf.uint8 and spec["colour1"].shape == (2, len(COLOUR_FIELDS))
    host = data.pretrain_dataset(sources, batch_size=2, seed=4, config=cfg, epochs=1, output_dtype=np.float32)
    n = 0
    for d, h in zip(ds, host):
        out = _XLA(d["view2"], d["colour2"])
        assert np.abs(out.numpy() - h["view2"].numpy()).max() <= TOL
        n += 1
    assert n == 2  # 5 videos in whole batches of 2
