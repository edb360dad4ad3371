"""The engine as TensorFlow ops and the graph input pipeline (issue 16).

Oracles: `sample_pair` for the one-source op, PairLoader's batches (bytes, source ids, colour rows) for the
graph pipeline, PairLoader.stats for what was skipped, and an uninterrupted iterator for a restored one.
"""
import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from cvrl_fast import AugmentConfig, PairLoader, _C, data, sample_pair, tf_ops  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = AugmentConfig(num_frames=4, crop_size=24)


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Five small mp4s (one -g 16), two files that do not decode, and a TFRecord of three videos with a
    record between them that holds no SequenceExample."""
    from cvrl_fast.tfrecord import write_tfrecord

    d = tmp_path_factory.mktemp("graph_media")
    good = []
    for i, (seconds, gop) in enumerate([(2.0, 12), (2.4, 16), (3.0, 250), (1.2, 12), (1.6, 16)]):
        p = d / f"clip{i}.mp4"
        _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=80x56:rate=25:duration={seconds}", "-vf", f"hue=h={50 * i}",
                "-c:v", "libx264", "-g", gop, "-pix_fmt", "yuv420p", p)
        good.append(str(p))
    garbage = d / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    truncated = d / "truncated.mp4"
    truncated.write_bytes(open(good[0], "rb").read()[:1500])
    plain = d / "plain.tfrecord"
    write_tfrecord(str(plain), good[:3], fps=25.0)
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(plain))]
    mixed = d / "mixed.tfrecord"
    with tf.io.TFRecordWriter(str(mixed)) as w:  # a valid record frame whose payload is no video
        for payload in (records[0], b"\x12\x05abc", records[1], records[2]):
            w.write(payload)
    return {"good": good, "broken": [str(garbage), str(truncated)], "tfrecord": str(mixed)}


def _loader_batches(sources, **kw):
    with PairLoader(sources, num_threads=2, log_skips=False, **kw) as ld:
        return [{k: v.copy() for k, v in b.items()} for b in ld], ld.stats


def _graph_batches(sources, **kw):
    ds = data.pretrain_dataset(sources, engine="graph", include_index=True, log_skips=False, **kw)
    return [{k: v.numpy() for k, v in b.items()} for b in ds]


def _assert_same_batches(got, want):
    assert len(got) == len(want) > 0
    for i, (g, w) in enumerate(zip(got, want)):
        assert set(g) == set(w), (set(g), set(w))
        for k in w:
            np.testing.assert_array_equal(g[k], w[k], err_msg=f"batch {i}, {k}")


# ---- CvrlMakePair: one source ----

@pytest.mark.parametrize("augment_on", ["host", "device"])
def test_make_pair_op_matches_sample_pair(media, augment_on):
    tfr = media["tfrecord"]
    offset, length = _C.index_tfrecord(tfr)[2]
    cases = [(media["good"][1], {}, media["good"][1]), (tfr, {"record_offset": offset, "record_length": length},
                                                        (tfr, 2))]
    for path, record, source in cases:
        for seed, epoch, key in [(0, 0, 0), (7, 3, 11), ((1 << 64) - 5, 1, (1 << 63) + 9)]:
            out = tf_ops.make_pair(path, seed, config=SMALL, epoch=epoch, sample_key=key, augment_on=augment_on,
                                   **record)
            want = sample_pair(source, seed, SMALL, epoch=epoch, index=key, augment_on=augment_on)
            assert bool(out["ok"]) and out["error"].numpy() == b""
            np.testing.assert_array_equal(out["view1"].numpy(), want[0])
            np.testing.assert_array_equal(out["view2"].numpy(), want[1])
            if augment_on == "device":
                np.testing.assert_array_equal(out["colour1"].numpy(), want[2])
                np.testing.assert_array_equal(out["colour2"].numpy(), want[3])
            else:
                assert not out["colour1"].numpy().any() and not out["colour2"].numpy().any()
    out = tf_ops.make_pair(media["good"][0], 2, config=SMALL, output_dtype=np.float32)
    np.testing.assert_array_equal(out["view1"].numpy(), sample_pair(media["good"][0], 2, SMALL,
                                                                    output_dtype=np.float32)[0])


def test_make_pair_op_matches_sample_pair_fails(media):
    """The oracle sees a wrong key: another epoch or sample key gives other bytes."""
    path = media["good"][1]
    want = sample_pair(path, 7, SMALL, epoch=3, index=11)[0]
    for kw in ({"epoch": 2, "sample_key": 11}, {"epoch": 3, "sample_key": 12}):
        assert not np.array_equal(tf_ops.make_pair(path, 7, config=SMALL, **kw)["view1"].numpy(), want)


def test_make_pair_op_bad_media_is_a_flag_not_an_error(media):
    for path in media["broken"]:
        out = tf_ops.make_pair(path, 0, config=SMALL)
        with pytest.raises(Exception) as e:
            sample_pair(path, 0, SMALL)
        assert not bool(out["ok"]) and out["error"].numpy().decode() == str(e.value)
        assert not out["view1"].numpy().any() and out["view1"].shape == (4, 24, 24, 3)
    # Inside Dataset.map the flag travels with the element.
    ds = tf.data.Dataset.from_tensor_slices(media["good"][:2] + media["broken"]).map(
        lambda p: tf_ops.make_pair(p, 0, config=SMALL)["ok"], num_parallel_calls=2, deterministic=True)
    assert [bool(x) for x in ds] == [True, True, False, False]


def test_make_pair_op_bad_arguments_fail(media):
    path = media["good"][0]
    for kw, message in [({"epoch": -1}, "CvrlMakePair: epoch = -1 must be >= 0"),
                        ({"record_offset": -2}, "record_offset = -2 must be >= 0 .* or -1"),
                        ({"record_offset": 0, "record_length": -1}, "record_length = -1 must be >= 0")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            tf_ops.make_pair(path, 0, config=SMALL, **kw)
    with pytest.raises(tf.errors.InvalidArgumentError, match="path must be a scalar, got shape"):
        tf_ops.make_pair([path, path], 0, config=SMALL)
    with pytest.raises(tf.errors.InvalidArgumentError, match="CvrlMakePair: path is empty"):
        tf_ops.make_pair("", 0, config=SMALL)
    lib = tf_ops.library()
    args = dict(path=path, record_offset=tf.constant(-1, tf.int64), record_length=tf.constant(0, tf.int64),
                seed=tf.constant(0, tf.int64), epoch=tf.constant(0, tf.int64), sample_key=tf.constant(0, tf.int64))
    settings = tf_ops.settings_attr(SMALL)
    for text, message in [(settings.replace("crop_size=24", "crop_size=0"), r"crop_size = 0 is invalid; valid range"),
                          (settings.replace("hue=", "hue_shift="), "'hue' is missing"),
                          (settings + "colour=1\n", "unknown field 'colour'"),
                          (settings.replace("flip_prob=0.5", "flip_prob=half"), "flip_prob = 'half' is not a valid")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            lib.cvrl_make_pair(settings=text, **args)
    with pytest.raises(tf.errors.InvalidArgumentError, match="dtype=float32 needs augment_on='host'"):
        lib.cvrl_make_pair(settings=settings, augment_on="device", dtype=tf.float32, **args)
    with pytest.raises(ValueError, match="augment_on = 'gpu' must be 'host' or 'device'"):
        tf_ops.make_pair(path, 0, config=SMALL, augment_on="gpu")


def test_settings_text_is_exact():
    """Every double survives the string attr bit for bit (TF's float attrs would round them to 32 bits)."""
    cfg = AugmentConfig(area_range=(0.1 + 0.2, 0.7), hue=1 / 3 * 0.5, blur_sigma_range=(0.1, 2.0 / 3), parity=False,
                        jpeg_dct_scaling=True, target_fps=29.97)
    s = cfg._native()
    back = _C.parse_settings(s.serialize())
    fields = [f for f in dir(s) if not f.startswith("_") and f not in ("serialize", "validate", "augment_on")]
    assert len(fields) == 23  # every field the binding exposes (blur_prob and solarize_prob are pairs)
    for f in fields:
        assert getattr(back, f) == getattr(s, f), f
    assert back.area_min == 0.1 + 0.2 != float(np.float32(0.1 + 0.2))


def test_settings_text_is_exact_fails():
    text = AugmentConfig()._native().serialize()
    with pytest.raises(ValueError, match="'blur_prob1' is given twice"):
        _C.parse_settings(text + "blur_prob1=0.5\n")
    with pytest.raises(ValueError, match="line 'nonsense' is not name=value"):
        _C.parse_settings(text + "nonsense\n")
    with pytest.raises(ValueError, match="num_frames = '4.5' is not a valid value"):
        _C.parse_settings(text.replace("num_frames=16", "num_frames=4.5"))


# ---- the graph pipeline vs PairLoader ----

@pytest.mark.parametrize("augment_on", ["host", "device"])
def test_graph_engine_matches_loader(media, augment_on):
    """mp4s with two broken files among them, and a TFRecord with a broken record: batch for batch the
    loader's bytes, source ids and colour rows, over epochs (batches straddle them), skips included."""
    for sources, batch_size in [(media["good"][:3] + media["broken"] + media["good"][3:], 3), (media["tfrecord"], 2)]:
        kw = dict(batch_size=batch_size, seed=5, config=SMALL, epochs=3, augment_on=augment_on)
        want, stats = _loader_batches(sources, **kw)
        _assert_same_batches(_graph_batches(sources, **kw), want)
        assert stats["failed_attempts"] > 0  # the replacements were exercised
    # Resume point, no shuffle, float32 output.
    sources = media["good"] + media["broken"][:1]
    want, _ = _loader_batches(sources, batch_size=2, seed=1, config=SMALL, epochs=2)
    _assert_same_batches(_graph_batches(sources, batch_size=2, seed=1, config=SMALL, epochs=2, start_batch=3), want[3:])
    for kw in ({"shuffle": False}, {"output_dtype": np.float32}):
        want, _ = _loader_batches(sources, batch_size=2, seed=1, config=SMALL, epochs=1, **kw)
        _assert_same_batches(_graph_batches(sources, batch_size=2, seed=1, config=SMALL, epochs=1, **kw), want)


def test_graph_engine_matches_loader_fails(media):
    """The comparison sees a different permutation (seed) and a different replacement rule (retries)."""
    sources = media["good"][:3] + media["broken"]
    want, _ = _loader_batches(sources, batch_size=3, seed=5, config=SMALL, epochs=2)
    with pytest.raises(AssertionError):
        _assert_same_batches(_graph_batches(sources, batch_size=3, seed=6, config=SMALL, epochs=2), want)
    got = _graph_batches(sources, batch_size=3, seed=5, config=SMALL, epochs=2)
    got[0]["view2"][0, 0, 0, 0, 0] ^= 1
    with pytest.raises(AssertionError):
        _assert_same_batches(got, want)


def test_graph_engine_shards_by_input_context(media):
    sources = media["good"] + media["broken"]
    for pipeline in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        got = data.pretrain_dataset(sources, batch_size=2, seed=3, input_context=ctx, config=SMALL, epochs=2,
                                    include_index=True, engine="graph", log_skips=False)
        assert got.element_spec["view1"].shape == (1, 4, 24, 24, 3)
        want, _ = _loader_batches(sources, batch_size=1, seed=3, config=SMALL, epochs=2, shard_index=pipeline,
                                  num_shards=2)
        _assert_same_batches([{k: v.numpy() for k, v in b.items()} for b in got], want)


def test_graph_engine_records_skips(media, capfd):
    """What was skipped, and why, as PairLoader.stats says; logged once per source on stderr."""
    sources = media["good"][:2] + media["broken"]
    _, stats = _loader_batches(sources, batch_size=2, seed=0, config=SMALL, epochs=3)
    capfd.readouterr()
    _, attempts_before = tf_ops.skipped_sources()
    ds = data.pretrain_dataset(sources, batch_size=2, seed=0, config=SMALL, epochs=3, engine="graph")
    assert len(list(ds)) == 6  # 3 epochs of 4 slots
    after, attempts = tf_ops.skipped_sources()
    mine = {name: why for name, why in after if name in media["broken"]}
    assert mine == dict(stats["skipped"]) and len(mine) == 2
    assert attempts - attempts_before >= stats["failed_attempts"] >= 2  # the graph has no known-bad cache
    err = capfd.readouterr().err  # the other tests here do not log
    assert all(err.count(f"cvrl_fast: skipping {name}:") == 1 for name in media["broken"]), err


def test_log_new_skips_logs_each_source_once(media, tmp_path, capfd, caplog):
    """log_skips=False: the op prints nothing; tf_ops.log_new_skips() logs each newly skipped source once
    through the cvrl_fast logger, with PairLoader's message, and nothing on a second call."""
    import logging

    broken = []
    for name in ("logged_once_1.mp4", "logged_once_2.mp4"):
        (tmp_path / name).write_bytes(b"not a video" * 100)
        broken.append(str(tmp_path / name))
    tf_ops.log_new_skips()  # what earlier tests skipped
    capfd.readouterr()
    caplog.clear()
    ds = data.pretrain_dataset(media["good"][:2] + broken, batch_size=2, seed=0, config=SMALL, epochs=2,
                               engine="graph", log_skips=False)
    assert len(list(ds)) == 4
    assert "skipping" not in capfd.readouterr().err
    with caplog.at_level(logging.WARNING, logger="cvrl_fast"):
        assert tf_ops.log_new_skips() == 2
        assert tf_ops.log_new_skips() == 0
    messages = sorted(r.getMessage() for r in caplog.records if r.name == "cvrl_fast")
    assert [m.split(": cannot open video")[0] for m in messages] == [f"skipping {b}" for b in broken], messages


def test_graph_engine_all_bad_fails(media):
    """Every source failed: the op stops with the loader's message (not "N replacements in a row")."""
    ds = data.pretrain_dataset(media["broken"], batch_size=2, seed=0, config=SMALL, engine="graph", log_skips=False)
    with pytest.raises(tf.errors.DataLossError,
                       match=r"cvrl_fast input: PairLoader: every one of the 2 sources failed to decode; first error: "
                             r".*(garbage|truncated)"):
        next(iter(ds))


def test_graph_engine_retries_exhausted_fails(media):
    """Some sources still good: max_retries failed replacements in a row stop the data, naming the last."""
    sources = media["good"][:1] + media["broken"]
    ds = data.pretrain_dataset(sources, batch_size=1, seed=0, config=SMALL, engine="graph", log_skips=False,
                               max_retries=0, epochs=1)
    with pytest.raises(tf.errors.DataLossError,
                       match=r"cvrl_fast input: PairLoader: 0 replacement sources in a row failed to decode \(last: "):
        for _ in ds:
            pass


def test_graph_engine_bad_arguments_fail(media):
    with pytest.raises(ValueError, match=r"engine = 'threads' must be one of \('loader', 'graph'\)"):
        data.pretrain_dataset(media["good"], batch_size=2, seed=0, engine="threads")
    with pytest.raises(ValueError, match="stats= is for engine='loader'"):
        data.pretrain_dataset(media["good"], batch_size=2, seed=0, engine="graph", stats={})
    with pytest.raises(ValueError, match="num_threads = 0 must be None"):
        data.pretrain_dataset(media["good"], batch_size=2, seed=0, engine="graph", num_threads=0)
    lib = tf_ops.library()
    table = {k: tf.constant(v.tolist() if v.dtype == object else v) for k, v in data.source_table(media["good"]).items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match="CvrlSlotPair: slot = -1 must be >= 0"):
        tf_ops.slot_pair(table, 0, -1, config=SMALL)
    with pytest.raises(tf.errors.InvalidArgumentError, match="source_ids must be a vector of 5 .one per path., got"):
        lib.cvrl_slot_pair(paths=table["paths"], record_offsets=table["record_offsets"],
                           record_lengths=table["record_lengths"], source_ids=table["source_ids"][:2],
                           seed=tf.constant(0, tf.int64), slot=tf.constant(0, tf.int64),
                           settings=tf_ops.settings_attr(SMALL))


# ---- iterator checkpoints ----

def test_graph_iterator_checkpoint_resumes_exactly(media, tmp_path):
    """A restored iterator continues where the saved one was (the map and prefetch buffers were in flight);
    the checkpoint holds positions, not batches."""
    kw = dict(batch_size=2, seed=4, config=SMALL, include_index=True, engine="graph", log_skips=False,
              augment_on="device")
    sources = media["good"] + media["broken"]
    it = iter(data.pretrain_dataset(sources, **kw))
    for _ in range(3):
        next(it)
    path = tf.train.Checkpoint(iterator=it).write(str(tmp_path / "it"))
    want = [next(it) for _ in range(4)]
    size = sum(os.path.getsize(tmp_path / f) for f in os.listdir(tmp_path))
    assert size < 64 * 1024, size  # one batch alone is 2 x 2 x 4 x 24 x 24 x 3 = 28 kB, 8 batches in flight
    fresh = iter(data.pretrain_dataset(sources, **kw))
    tf.train.Checkpoint(iterator=fresh).read(path).assert_consumed()
    for w in want:
        g = next(fresh)
        for k in w:
            np.testing.assert_array_equal(g[k].numpy(), w[k].numpy(), err_msg=k)


def test_graph_iterator_checkpoint_resumes_exactly_fails(media, tmp_path):
    """Without the restore the fresh iterator starts at batch 0, which the comparison sees."""
    kw = dict(batch_size=2, seed=4, config=SMALL, include_index=True, engine="graph", log_skips=False)
    it = iter(data.pretrain_dataset(media["good"], **kw))
    for _ in range(3):
        next(it)
    want = next(it)
    got = next(iter(data.pretrain_dataset(media["good"], **kw)))
    assert not np.array_equal(got["view1"].numpy(), want["view1"].numpy())


# ---- without TensorFlow ----

def test_package_works_without_tensorflow(media):
    """`import cvrl_fast`, the decoder and the loader never need TensorFlow; the ops say how to get them."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["tensorflow"] = None  # any import of TensorFlow fails
        import cvrl_fast
        from cvrl_fast import tf_ops
        v1, v2 = cvrl_fast.sample_pair({media['good'][0]!r}, 0, cvrl_fast.AugmentConfig(num_frames=4, crop_size=24))
        print(v1.shape, cvrl_fast.VideoReader({media['good'][0]!r}).num_frames, tf_ops.library_path().endswith("_tf_ops.so"))
        try:
            tf_ops.library()
        except ImportError as e:
            print("ImportError")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["(4, 24, 24, 3) 50 True", "ImportError"], out.stdout


# ---- tf.data service: a dispatcher and two workers in separate processes ----

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WORKER_LOGS = []  # the stderr files of the service fixture's two input workers


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """`cvrl-fast input-dispatcher` and two `cvrl-fast input-worker` processes on 127.0.0.1."""
    port = _free_port()
    cli = [sys.executable, "-m", "cvrl_fast.cli"]
    logs = tmp_path_factory.mktemp("worker_logs")
    WORKER_LOGS[:] = [logs / f"worker{i}.err" for i in range(2)]
    procs = [subprocess.Popen(cli + ["input-dispatcher", "--port", str(port)], stdout=subprocess.PIPE, text=True)]
    try:
        assert procs[0].stdout.readline().startswith(f"input-dispatcher: serving grpc://localhost:{port}")
        for log in WORKER_LOGS:
            procs.append(subprocess.Popen(cli + ["input-worker", "--dispatcher", f"127.0.0.1:{port}", "--host",
                                                 "127.0.0.1"], stdout=subprocess.PIPE, stderr=open(log, "w"),
                                          text=True))
        for p in procs[1:]:
            assert p.stdout.readline().startswith("input-worker: serving the dispatcher")
        yield f"127.0.0.1:{port}"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            assert p.wait(timeout=60) == 0  # SIGTERM stops a server cleanly


def _fingerprint(batch):
    return (tuple(np.asarray(batch["index"]).tolist()),
            hashlib.sha256(np.asarray(batch["view1"]).tobytes() + np.asarray(batch["view2"]).tobytes()).hexdigest())


def test_graph_pipeline_runs_on_tf_data_service(media, service):
    """Every batch of the loader's two epochs, each once, with the loader's bytes (the order depends on
    which worker is ready first)."""
    sources = media["good"] + media["broken"]
    kw = dict(batch_size=2, seed=8, config=SMALL, epochs=2)
    want, _ = _loader_batches(sources, **kw)
    ds = data.distribute(data.pretrain_dataset(sources, engine="graph", include_index=True, **kw), service)
    got = list(ds.as_numpy_iterator())
    assert sorted(map(_fingerprint, got)) == sorted(map(_fingerprint, want)) and len(got) == 7


def test_input_workers_log_skips_through_python_logging(media, service, tmp_path):
    """A pipeline built with log_skips=False (as the trainer builds it): the op prints nothing, and each
    worker logs the sources it skipped once, through its cvrl_fast logger (tf_ops.log_new_skips, polled
    by `cvrl-fast input-worker`)."""
    broken = []
    for name in ("skipped_on_a_worker_1.mp4", "skipped_on_a_worker_2.mp4"):  # names no other test uses
        (tmp_path / name).write_bytes(b"not a video" * 100)
        broken.append(str(tmp_path / name))
    ds = data.pretrain_dataset(media["good"] + broken, batch_size=2, seed=3, config=SMALL, epochs=2, engine="graph",
                               log_skips=False)
    assert len(list(data.distribute(ds, service).as_numpy_iterator())) == len(media["good"] + broken)  # 2 epochs
    deadline = time.monotonic() + 20  # the workers poll once a second
    while True:
        logs = [log.read_text() for log in WORKER_LOGS]
        counts = [[log.count(f"cvrl_fast: skipping {name}: cannot open video") for log in logs] for name in broken]
        if all(sum(c) >= 1 for c in counts) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all(sum(c) >= 1 and max(c) == 1 for c in counts), (counts, logs)


def test_generator_pipeline_on_tf_data_service_fails(media, service):
    """The loader engine's from_generator pipeline cannot run there: the workers have no Python function."""
    ds = data.distribute(data.pretrain_dataset(media["good"], batch_size=2, seed=8, config=SMALL, epochs=1), service)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Could not find callback with key=pyfunc_"):
        next(iter(ds))


def test_trainer_reads_from_tf_data_service(media, service, tmp_path):
    """data.service_address: the trainer's graph pipeline runs on the workers; a resumed service run starts
    at the step (the service iterator is not in the checkpoint)."""
    from cvrl_fast import trainer
    from cvrl_fast.configs import load_config

    overrides = ["model.depth=18", "model.head_num_hidden_layers=1", "train.total_steps=2", "train.global_batch_size=2",
                 "data.engine=graph", f"data.service_address={service}", "data.sources=" + ",".join(media["good"])]
    workdir = str(tmp_path / "run")
    part = trainer.train(load_config("tiny_cpu", overrides + ["train.stop_after_steps=1"]), workdir)
    rest = trainer.train(load_config("tiny_cpu", overrides), workdir)
    assert (part.step, rest.start_step, rest.step) == (1, 1, 2) and np.isfinite(rest.metrics["loss"])
    reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints", "ckpt-2"))
    assert not any(k.startswith("input_iterator/") for k in reader.get_variable_to_shape_map())
