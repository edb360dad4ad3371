"""cvrl_fast.dali: DALI decodes, the project's engine plans. On this CPU-only machine DALI's CPU backend runs
(VP9 and MJPEG fixtures cut from the real clips); `make test-dali` installs DALI first (CI runs it).

Oracles: the C++ loader in device mode (`PairLoader(..., augment_on="device")`) for the same seed: the same
videos in the same order, the same frames, boxes and flips (read back from the blobs the sampler hands DALI,
against `sample_pair`'s drawn parameters), identical colour rows, and pixels within the decoders' YUV->RGB
difference (mean |diff| under 2 levels).
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("nvidia.dali.plugin.tf")

from cvrl_fast import AugmentConfig, PairLoader, _C, dali, sample_pair  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = AugmentConfig(num_frames=6, crop_size=48)
MEAN_DIFF_MAX = 2.0  # levels: swscale vs DALI's YUV->RGB (README, "DALI input")


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def media(clip_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("dali")
    files = {}
    for name, src, seconds in (("bikes", "bikes.mp4", 3), ("carphone", "carphone_pristine.mp4", 3),
                               ("city", "cityCC0.mpg", 2.5)):
        files[name] = d / f"{name}.webm"
        _ffmpeg("-i", clip_dir / src, "-t", seconds, "-vf", "scale=240:-2", "-c:v", "libvpx-vp9", "-deadline",
                "realtime", "-cpu-used", "8", "-b:v", "600k", files[name])
    files["mjpeg"] = d / "film.avi"
    _ffmpeg("-i", clip_dir / "film1906.mp4", "-t", 2, "-vf", "scale=240:-2", "-c:v", "mjpeg", "-q:v", "3",
            files["mjpeg"])
    files["h264"] = clip_dir / "bikes.mp4"
    files["broken"] = d / "broken.webm"
    # A WebM header followed by garbage: no decodable stream (a truncated file that keeps a frame or two is a
    # short video, not a bad one, for both loaders).
    files["broken"].write_bytes(files["bikes"].read_bytes()[:200] +
                                np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return files


def _good(media):
    return [str(media[k]) for k in ("bikes", "carphone", "city", "mjpeg")]


def _assert_same_as_loader(ds, loader_kw, sources, batches):
    n = 0
    with PairLoader(sources, augment_on="device", **loader_kw) as loader:
        for d, c in zip(ds.take(batches), loader):
            for k in ("colour1", "colour2"):
                np.testing.assert_array_equal(d[k].numpy(), c[k])
            for k in ("view1", "view2"):
                got = d[k].numpy()
                assert got.dtype == np.uint8 and got.shape == c[k].shape
                diff = np.abs(got.astype(np.int16) - c[k].astype(np.int16))
                assert diff.mean() < MEAN_DIFF_MAX, (n, k, diff.mean())
            n += 1
    assert n == batches


def test_dali_matches_the_cpp_loader(media):
    sources = _good(media)
    ds = dali.pretrain_dataset(sources, batch_size=2, seed=5, device="cpu", config=CFG, num_threads=2)
    spec = ds.element_spec
    assert spec["view1"].shape == (2, 6, 48, 48, 3) and spec["view1"].dtype == tf.uint8
    assert spec["colour2"].shape == (2, 13) and spec["colour2"].dtype == tf.float32
    _assert_same_as_loader(ds, dict(batch_size=2, seed=5, config=CFG), sources, batches=5)  # > 2 epochs


def test_sampler_plans_the_loaders_frames_boxes_and_flips(media):
    """The blob header DALI decodes from, against sample_pair's drawn parameters for the slot's (video, epoch,
    key): frames (index space mapped to stored frames by the frame times), boxes and flips."""
    sources = _good(media) + [str(media["broken"])]
    refs, _ = _C_refs(sources)
    sampler = dali.SlotSampler(refs, seed=9, settings=CFG._native(), batch_size=2, shuffle=True, epochs=None,
                               start_batch=0)
    n_ints, _ = dali._header_layout(CFG.num_frames)
    with PairLoader(sources, batch_size=2, seed=9, config=CFG, augment_on="device") as loader:
        for b in range(4):
            batch = next(loader)
            for row in range(2):
                blob = sampler.blob(2 * b + row)
                assert sampler.last["source_id"] == batch["index"][row]
                ints = blob[:4 * n_ints].view(np.int32)
                path = sources[sampler.last["source_id"]]
                *_, info = sample_pair(path, 9, CFG, epoch=sampler.last["epoch"], index=sampler.last["key"],
                                       augment_on="device", return_params=True)
                frame_of_index = _C.fixed_rate_frame_map(list(_C.VideoReader(path, 1).frame_pts_seconds), 25.0)
                T = CFG.num_frames
                for v in range(2):
                    view = info[f"view{v + 1}"]
                    assert list(ints[v * T:(v + 1) * T]) == [frame_of_index[i] for i in view["indices"]]
                    o = 2 * T + 5 * v
                    assert tuple(ints[o:o + 4]) == tuple(view["crop"]) and bool(ints[o + 4]) == view["flip"]
    assert [s for s, _ in sampler.stats["skipped"]] == [str(media["broken"])]  # skipped once, as by the loader


def _C_refs(sources):
    from cvrl_fast._loader import resolve_sources

    return resolve_sources(sources)


def test_dali_skips_bad_files_like_the_cpp_loader(media):
    sources = _good(media)[:2] + [str(media["broken"])] + _good(media)[2:]
    stats = {}
    ds = dali.pretrain_dataset(sources, batch_size=2, seed=1, device="cpu", config=CFG, num_threads=2, stats=stats)
    _assert_same_as_loader(ds, dict(batch_size=2, seed=1, config=CFG), sources, batches=5)
    assert [s for s, _ in stats["skipped"]] == [str(media["broken"])] and stats["failed_attempts"] >= 1


def test_dali_shards_and_resumes_like_the_cpp_loader(media):
    sources = _good(media)
    kw = dict(batch_size=2, seed=3, config=CFG)
    # Shard 1 of 2 (input_context), resumed at batch 3.
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    ds = dali.pretrain_dataset(sources, batch_size=4, seed=3, device="cpu", config=CFG, input_context=ctx,
                               start_batch=3, num_threads=2)
    with PairLoader(sources, shard_index=1, num_shards=2, augment_on="device", **kw) as loader:
        expected = [next(loader) for _ in range(5)][3:]
    for d, c in zip(ds.take(2), expected):
        np.testing.assert_array_equal(d["colour1"].numpy(), c["colour1"])
        assert np.abs(d["view2"].numpy().astype(int) - c["view2"]).mean() < MEAN_DIFF_MAX


def test_dali_matches_the_cpp_loader_fails(media):
    """What DALI cannot read is refused before any pipeline is built, naming the file and what to do."""
    with pytest.raises(ValueError, match=r"bikes.mp4: codec h264 is not decoded by DALI's CPU video decoder "
                                         r"\(it takes vp8, vp9, mjpeg\); use device='gpu' \(NVDEC\)"):
        dali.pretrain_dataset([str(media["h264"])] + _good(media), batch_size=2, seed=0, device="cpu", config=CFG)
    with pytest.raises(ValueError, match="device = 'tpu' must be 'gpu' or 'cpu'"):
        dali.pretrain_dataset(_good(media), batch_size=2, seed=0, device="tpu")
    from cvrl_fast import trainer
    from cvrl_fast.configs import load_config

    with pytest.raises(ValueError, match="data.augment_on=host with data.loader=dali"):
        trainer.resolve_augment_on("host", "GPU", "dali")
    with pytest.raises(ValueError, match=r"data.loader='nvdec': must be one of \('cpp', 'dali'\)"):
        trainer.validate_config(load_config("tiny_cpu", ["data.loader=nvdec"]))


_MIRRORED = textwrap.dedent("""
    import json, os, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from cvrl_fast import trainer
    from cvrl_fast.configs import load_config

    root, sources = sys.argv[1], sys.argv[2]
    base = ["model.depth=18", "model.head_num_hidden_layers=1", "runtime.deterministic=true",
            "runtime.strategy=mirrored", "data.loader=dali", "data.sources=" + sources, "train.total_steps=2",
            "checkpoint.every_steps=1"]
    full = trainer.train(load_config("tiny_cpu", base), os.path.join(root, "full"))
    part = trainer.train(load_config("tiny_cpu", base + ["train.stop_after_steps=1"]), os.path.join(root, "part"))
    rest = trainer.train(load_config("tiny_cpu", base), os.path.join(root, "part"))
    print(json.dumps({"full": full.step, "rest": [rest.start_step, rest.step], "loss": full.metrics["loss"]}))
""")


def test_trainer_with_dali_under_mirrored_strategy_resumes_exactly(media, tmp_path):
    proc = subprocess.run([sys.executable, "-c", _MIRRORED, str(tmp_path), ",".join(_good(media))], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["full"] == 2 and result["rest"] == [1, 2] and np.isfinite(result["loss"])
    assert "decoded by DALI on the CPU; colour augmentation on the CPU replicas" in proc.stdout
    readers = [tf.train.load_checkpoint(str(tmp_path / run / "checkpoints" / "ckpt-2")) for run in ("full", "part")]
    keys = [k for k in readers[0].get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert len(keys) > 150
    for key in keys:
        np.testing.assert_array_equal(readers[0].get_tensor(key), readers[1].get_tensor(key), err_msg=key)


def test_nvdec_benchmark_checks_what_it_needs():
    """benchmarks/bench_dali.py --gpu on a machine without a GPU says so and stops (rc 2) before any work."""
    proc = subprocess.run([sys.executable, "benchmarks/bench_dali.py", "--gpu"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "bench_dali: missing a GPU visible to TensorFlow (--gpu times NVDEC)" in proc.stderr
