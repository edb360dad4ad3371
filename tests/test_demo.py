"""`make demo` in reduced mode: every stage runs and the outputs a person looks at are written."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAST_LINE = re.compile(r"demo: pretrained top-1 (\d+\.\d)% vs random-init top-1 (\d+\.\d)% "
                       r"on (\d+) held-out videos in (\d+\.\d) min")


def _check_outputs(workdir: pathlib.Path, lines: list[str]) -> None:
    m = LAST_LINE.fullmatch(lines[-1])
    assert m, lines[-1]
    assert int(m.group(3)) == 4
    for name in ("curves.png", "augmented_pairs.png"):
        data = (workdir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir / "pretrain" / "tensorboard"))
    assert list((workdir / "pretrain" / "backbone").glob("backbone-*.index"))  # official-layout backbone
    assert any("CVRL pretrained" in line for line in lines) and any("random init" in line for line in lines)


def test_demo_quick_runs_every_stage(tmp_path, capsys):
    from cvrl_fast import cli

    assert cli.main(["demo", "--workdir", str(tmp_path / "demo"), "--quick"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    _check_outputs(tmp_path / "demo" / "quick", lines)


def test_demo_as_the_readme_runs_it():
    """`make demo`'s command, from the repository root, with the default relative --workdir (demo_work):
    --quick writes demo_work/quick/, so a full demo's outputs beside it are left alone."""
    workdir = ROOT / "demo_work" / "quick"
    shutil.rmtree(workdir, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "cvrl_fast.cli", "demo", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    _check_outputs(workdir, lines)
    # The lists name their videos relative to themselves, so they mean the same files from anywhere.
    rows = (workdir / "data" / "train.csv").read_text().splitlines()[1:]
    assert rows and all(row.startswith("train/") for row in rows)
    # No TensorFlow start-up noise and no deprecation text from our own calls.
    for noise in ("InitializeLog", "cudart_stub", "Instructions for updating", "deprecat"):
        assert noise not in proc.stdout + proc.stderr, noise
    shutil.rmtree(workdir)


def test_demo_unknown_config_key_fails(tmp_path, capsys):
    from cvrl_fast import cli

    assert cli.main(["demo", "--workdir", str(tmp_path), "--quick", "--config.pretrain.train.no_such_key=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown config key 'pretrain.train.no_such_key'" in err[0], err
