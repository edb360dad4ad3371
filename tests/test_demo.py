"""`make demo` in reduced mode: every stage runs and the outputs a person looks at are written."""
import os
import re

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("matplotlib")


def test_demo_quick_runs_every_stage(tmp_path, capsys):
    from cvrl_fast import cli

    workdir = tmp_path / "demo"
    assert cli.main(["demo", "--workdir", str(workdir), "--quick"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.strip()]
    m = re.fullmatch(r"demo: pretrained top-1 (\d+\.\d)% vs random-init top-1 (\d+\.\d)% "
                     r"on (\d+) held-out videos in (\d+\.\d) min", lines[-1])
    assert m, lines[-1]
    assert int(m.group(3)) == 4
    for name in ("curves.png", "augmented_pairs.png"):
        data = (workdir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir / "pretrain" / "tensorboard"))
    assert list((workdir / "backbone").glob("demo_backbone*.index"))  # official-layout backbone checkpoint
    assert any("CVRL pretrained" in l for l in lines) and any("random init" in l for l in lines)


def test_demo_unknown_config_key_fails(tmp_path):
    from cvrl_fast import cli

    with pytest.raises(KeyError, match="unknown config key"):
        cli.main(["demo", "--workdir", str(tmp_path), "--quick", "--config.pretrain.train.no_such_key=1"])
