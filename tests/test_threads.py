"""Threads: many readers on many threads, loaders side by side, loaders stopped mid-epoch, stats read while
workers run. Quick in the default run (results against a serial oracle); `make test-tsan` runs them (and
the loader tests: Ctrl-C while waiting, interpreter exit with a live loader) under ThreadSanitizer, where
any data race in the engine fails the run."""
from __future__ import annotations

import os
import queue
import threading

import numpy as np
import pytest

import cvrl_fast
from cvrl_fast import AugmentConfig, PairLoader

SMALL = AugmentConfig(num_frames=4, crop_size=24)
NAMES = ["h264_bframes_mp4", "hevc_mkv", "vp9_webm", "mpeg2_ts", "mpeg4_avi", "h264_open_gop_mkv", "mjpeg_avi",
         "av1_mp4"]


def _tasks() -> int:
    return len(os.listdir("/proc/self/task"))


def _run_threads(fns, timeout=120):
    errors = []

    def wrap(fn):
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors


def test_many_readers_on_many_threads(video_files):
    """Sixteen threads, each with its own readers (one and two decoder threads), opening, decoding and
    closing at once: every frame equals the serial decode."""
    rng = np.random.default_rng(0)
    plans = {n: [rng.integers(0, 40, 6).tolist() for _ in range(3)] for n in NAMES}
    expected = {n: [cvrl_fast.VideoReader(video_files[n]).get_frames(ix) for ix in plans[n]] for n in NAMES}
    got = {}

    def work(n, k):
        for _ in range(2):
            with cvrl_fast.VideoReader(video_files[n], num_threads=1 + k % 2) as reader:
                got[(n, k)] = [reader.get_frames(ix) for ix in plans[n]]

    _run_threads([lambda n=n, k=k: work(n, k) for n in NAMES for k in range(2)])
    for (n, _), frames in got.items():
        for a, b in zip(frames, expected[n]):
            np.testing.assert_array_equal(a, b)


def test_loaders_side_by_side(video_files):
    """Three loaders consumed by three threads at once give the batches each gives alone."""
    paths = [str(video_files[n]) for n in NAMES[:5]]

    def collect(seed):
        with PairLoader(paths, batch_size=2, seed=seed, num_threads=2, config=SMALL, epochs=1) as ld:
            return [np.concatenate([b["view1"], b["view2"]]) for b in ld]

    alone = {seed: collect(seed) for seed in range(3)}
    together = {}
    _run_threads([lambda s=s: together.__setitem__(s, collect(s)) for s in range(3)])
    for seed in range(3):
        assert len(together[seed]) == len(alone[seed]) == 2
        for a, b in zip(together[seed], alone[seed]):
            np.testing.assert_array_equal(a, b)


def test_loader_stopped_mid_epoch(video_files, tmp_path):
    """Loaders closed while their workers are mid-decode (one batch taken of an endless epoch), from the
    consuming thread and from another one, with a bad file among the sources: close() returns, the
    threads are gone, the batches taken stay intact."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3000))
    paths = [str(video_files[n]) for n in NAMES[:4]] + [str(bad)]
    # The other thread lives through all cycles: a Python thread that has just been joined may still be a
    # task of the process for a moment, which would blur the thread count.
    requests, closed = queue.Queue(), queue.Queue()

    def closer():
        while (ld := requests.get()) is not None:
            ld.close()
            closed.put(ld.stats["samples"])

    helper = threading.Thread(target=closer, daemon=True)
    helper.start()
    before = _tasks()
    kept = []
    try:
        for cycle in range(6):
            ld = PairLoader(paths, batch_size=3, seed=cycle, num_threads=3, config=SMALL, prefetch_batches=3,
                            log_skips=False)
            b = next(ld)
            kept.append((b, b["view1"].copy()))
            if cycle % 2:
                requests.put(ld)
                assert closed.get(timeout=60) >= 3
            else:
                ld.close()
            assert _tasks() <= before, f"cycle {cycle}: {_tasks() - before} threads left"
    finally:
        requests.put(None)
    for b, copy in kept:
        np.testing.assert_array_equal(b["view1"], copy)


def test_stats_read_while_workers_run(video_files, tmp_path):
    """stats, skipped_since and next_batch from a second thread while the workers skip bad files and the
    main thread consumes: consistent counters (samples grow, skips are recorded once)."""
    bad = [tmp_path / f"bad{i}.mp4" for i in range(3)]
    for b in bad:
        b.write_bytes(bytes(range(256)) * 8)
    paths = [str(video_files[n]) for n in NAMES[:3]] + [str(b) for b in bad]
    ld = PairLoader(paths, batch_size=2, seed=0, num_threads=3, config=SMALL, epochs=4, log_skips=False)
    native = ld._native_loader
    stop = threading.Event()
    seen = []

    def poll():
        while not stop.is_set():
            st = native.stats()
            seen.append((st["samples"], len(st["skipped"]), len(native.skipped_since(0)), native.next_batch()))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        rows = sum(len(b["index"]) for b in ld)
    finally:
        stop.set()
        poller.join(30)
    assert rows == 24 and seen
    samples = [s[0] for s in seen]
    assert samples == sorted(samples) and all(0 <= s[1] <= 3 and s[2] >= s[1] for s in seen)
    assert sorted(name for name, _ in ld.stats["skipped"]) == sorted(str(b) for b in bad)
    ld.close()


@pytest.mark.slow
def test_loader_stopped_mid_epoch_many(video_files, tmp_path):
    for _ in range(5):
        test_loader_stopped_mid_epoch(video_files, tmp_path)
