"""benchmarks/scaling/loader_scaling: the Python-free driver that times the C++ loader per thread count
(the numbers in benchmarks/README.md, "Scaling with threads", came from it on a 16-core server).

Built here against the system's FFmpeg (`build.sh --shared`), so a change to the engine's API that
breaks the tool fails the suite rather than the next lent machine.
"""
import pathlib
import subprocess

import numpy as np
import pytest

from conftest import lavfi_source

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOOL = ROOT / "build" / "scaling" / "loader_scaling_shared"


@pytest.fixture(scope="module")
def tool():
    subprocess.run(["bash", str(ROOT / "benchmarks" / "scaling" / "build.sh"), "--shared"], check=True,
                   capture_output=True)
    return TOOL


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two 2 s 320x240 clips, and a reference-format TFRecord of them (one JPEG per frame)."""
    directory = tmp_path_factory.mktemp("scaling")
    clips = []
    for i, gop in enumerate(("250", "16")):
        path = directory / f"clip{i}.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", *lavfi_source("320x240", seconds=2.0), "-c:v", "libx264",
                        "-g", gop, str(path)], check=True)
        clips.append(path)
    pytest.importorskip("tensorflow")
    from cvrl_fast.tfrecord import write_tfrecord

    record = directory / "clips.tfrecord"
    write_tfrecord(str(record), [str(c) for c in clips])
    return clips, record


def _run(tool, *args):
    return subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True, timeout=300)


def _rows(stdout):
    return [line.split("\t") for line in stdout.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("kind", ["mp4", "tfrecord"])
def test_loader_scaling_times_pairs_and_decode(tool, inputs, kind):
    clips, record = inputs
    files = clips if kind == "mp4" else [record]
    out = _run(tool, "--label", kind, "--threads", "1,2", "--batch", "4", "--pairs-per-thread", "4",
               "--min-pairs", "6", *files)
    assert out.returncode == 0, out.stderr
    assert "2 sources" in out.stdout  # both clips, or both records of the TFRecord file
    rows = _rows(out.stdout)
    assert [(r[0], r[1], r[2]) for r in rows] == [(kind, m, t) for t in ("1", "2")
                                                  for m in ("pairs", "pairs_device", "decode")]
    for label, mode, threads, pairs, rate, per_cpu, busy, dec_ms, aug_ms, mb in rows:
        assert int(pairs) >= 6 and float(rate) > 0 and float(per_cpu) > 0 and 0 < float(busy) <= int(threads) + 0.5
        if mode.startswith("pairs"):
            assert float(dec_ms) > 0 and float(aug_ms) > 0 and int(pairs) % 4 == 0  # whole batches
        else:
            # 32 frames at most (fewer when the two clips overlap), full 320x240 RGB24
            assert 0 < float(mb) <= np.ceil(32 * 320 * 240 * 3 / 1e6)


def test_loader_scaling_times_host_and_device_modes(tool, inputs):
    """--augment-on picks the modes (one row each; their speeds are benchmarks/README.md's business)."""
    clips, _ = inputs
    args = ["--threads", "1", "--batch", "4", "--pairs-per-thread", "8", "--min-pairs", "8", "--mode", "pairs"]
    rows = {}
    for where in ("host", "device"):
        out = _run(tool, *args, "--augment-on", where, *clips)
        assert out.returncode == 0, out.stderr
        (row,) = _rows(out.stdout)
        rows[where] = row
    assert rows["host"][1] == "pairs" and rows["device"][1] == "pairs_device"
    assert all(int(r[3]) == 8 and float(r[4]) > 0 and float(r[8]) > 0 for r in rows.values())


def test_loader_scaling_times_host_and_device_modes_fails(tool, inputs):
    clips, _ = inputs
    out = _run(tool, "--augment-on", "gpu", *clips)
    assert out.returncode != 0 and "--augment-on must be both, host or device" in out.stderr


def test_loader_scaling_times_each_augment_op(tool):
    out = _run(tool, "--mode", "augment")
    assert out.returncode == 0, out.stderr
    ops = {r[1]: float(r[2]) for r in _rows(out.stdout)}
    assert {"resize", "+hue x4", "+blur sigma 2", "+blur sigma 0.5", "+solarize"} <= set(ops)
    assert all(ms > 0 for ms in ops.values())
    assert ops["+hue x4"] > ops["resize"]  # four hue passes on top of the resize cannot cost less


def test_loader_scaling_fails(tool, tmp_path):
    bad = tmp_path / "not_a_video.mp4"
    bad.write_bytes(b"\x00" * 1000)
    out = _run(tool, "--threads", "1", "--mode", "decode", bad)
    assert out.returncode == 1 and "not_a_video.mp4" in out.stderr
    out = _run(tool, "--threads", "0", bad)
    assert out.returncode == 2 and "--threads values must be in [1, 256]" in out.stderr
    out = _run(tool, "--frobnicate")
    assert out.returncode == 2 and "unknown option --frobnicate" in out.stderr
    out = _run(tool)
    assert out.returncode == 2 and "no input files" in out.stderr
