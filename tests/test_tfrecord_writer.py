"""The TFRecord writer as a user runs it (`python -m cvrl_fast.tfrecord OUT DIR_OR_LIST_OR_FILES...`, cvrl.md §7.1):
directories of class sub-directories and lists, real clips with broken files mixed in, relative paths from a
temporary cwd; bad videos are skipped and reported, the output appears only when complete."""
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from conftest import ffmpeg_frames  # noqa: E402
from cvrl_fast import evaluation, tfrecord  # noqa: E402


@pytest.fixture
def videos(clip_dir, tmp_path, monkeypatch):
    """cwd = tmp_path with videos/{ride,walk}/: two real clips, a text file named .mp4, a truncated mp4."""
    monkeypatch.chdir(tmp_path)
    os.makedirs("videos/ride")
    os.makedirs("videos/walk")
    os.symlink(clip_dir / "bikes.mp4", "videos/ride/bikes.mp4")
    os.symlink(clip_dir / "carphone_pristine.mp4", "videos/walk/carphone.mp4")
    open("videos/walk/notes.mp4", "w").write("a text file with a video's name\n")
    data = (clip_dir / "bikes.mp4").read_bytes()
    open("videos/ride/cut.mp4", "wb").write(data[:len(data) // 2])
    return tmp_path


def _records(path):
    """Every record, parsed by TF's own reader (independent of the writer and of cvrl_fast's reader)."""
    return [tf.train.SequenceExample.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


def test_tfrecord_writer_takes_directories_and_lists(videos, capsys):
    assert tfrecord.main(["out.tfrecord", "videos", "--short-side", "32", "--fps", "5"]) == 0
    out = capsys.readouterr().out
    assert ("tfrecord: skipped 2 of 4 videos: videos/ride/cut.mp4: cannot open video" in out
            and "\n  videos/walk/notes.mp4: cannot open video" in out and out.count("skipped 2 of 4") == 1)
    assert "classes: 0 ride, 1 walk" in out and "wrote 2 records to out.tfrecord" in out and "\r" not in out
    records = _records("out.tfrecord")
    ctx = [r.context.feature for r in records]
    assert [list(c["clip/label/index"].int64_list.value) for c in ctx] == [[0], [1]]
    assert [list(c["clip/label/text"].bytes_list.value) for c in ctx] == [[b"ride"], [b"walk"]]
    assert [c["video/source"].bytes_list.value[0] for c in ctx] == [b"bikes.mp4", b"carphone.mp4"]
    frames = records[0].feature_lists.feature_list["image/encoded"].feature
    assert len(frames) == 50  # 10 s at 5 fps
    # Stored frame i is the source frame shown at i/5 s, i.e. native frame 5i of the 25 fps clip, resized to
    # short side 32: of the ffmpeg CLI's frames around it, it is closest to exactly that one (JPEG aside).
    oracle = ffmpeg_frames("videos/ride/bikes.mp4", size=(32, 75)).astype(np.int16)
    for i in (0, 10, 49):
        got = tf.io.decode_jpeg(frames[i].bytes_list.value[0]).numpy().astype(np.int16)
        candidates = range(max(0, 5 * i - 2), min(len(oracle), 5 * i + 3))
        assert min(candidates, key=lambda j: np.abs(got - oracle[j]).mean()) == 5 * i, i
    # The evaluation tools read the class names back, so splits written separately share one numbering.
    assert evaluation.read_labelled_sources("out.tfrecord")[1:] == ([0, 1], ["ride", "walk"])
    # A list with class names, numbered by --classes; and plain files with --label.
    open("list.csv", "w").write("path,label\nvideos/ride/bikes.mp4,ride\nvideos/walk/carphone.mp4,walk\n")
    assert tfrecord.main(["sub/list.tfrecord", "list.csv", "--fps", "2", "--short-side", "16",
                          "--classes", "walk,ride"]) == 0
    assert [list(r.context.feature["clip/label/index"].int64_list.value) for r in _records("sub/list.tfrecord")] \
        == [[1], [0]]
    assert tfrecord.main(["files.tfrecord", "videos/walk/carphone.mp4", "--fps", "2", "--label", "4"]) == 0
    assert [list(r.context.feature["clip/label/index"].int64_list.value) for r in _records("files.tfrecord")] == [[4]]


def test_tfrecord_writer_takes_directories_and_lists_fails(videos, capsys, monkeypatch):
    def leftovers(name):
        return [f for f in os.listdir(".") if name in f]

    assert tfrecord.main(["bad.tfrecord", "videos/walk/notes.mp4", "videos/ride/cut.mp4"]) == 2
    err = capsys.readouterr().err
    assert "error: tfrecord: none of the 2 videos could be decoded (videos/walk/notes.mp4: " in err
    assert err.count("2 videos") == 1 and leftovers("bad.tfrecord") == []
    open("holes.csv", "w").write("videos/ride/bikes.mp4 ride\nvideos/ride/gone.mp4 ride\n")
    assert tfrecord.main(["holes.tfrecord", "holes.csv"]) == 2
    assert "holes.csv line 2: no such file '" in capsys.readouterr().err and leftovers("holes.tfrecord") == []
    assert tfrecord.main(["x.tfrecord", "videos", "--label", "3"]) == 2
    assert "--label given but the inputs carry labels" in capsys.readouterr().err
    assert tfrecord.main(["x.tfrecord", "videos", "--classes", "walk,swim"]) == 2
    assert "class 'ride' is not in --classes (walk, swim)" in capsys.readouterr().err
    assert tfrecord.main(["x.tfrecord", "videos", "videos/ride/bikes.mp4"]) == 2
    assert "inputs are labelled differently" in capsys.readouterr().err
    assert tfrecord.main(["x.tfrecord", "no_such_dir"]) == 2
    assert "no_such_dir: no such file or directory" in capsys.readouterr().err
    assert leftovers("x.tfrecord") == []
    # Ctrl-C after the first record: no output file and no temporary file.
    real = tfrecord.video_to_sequence_example
    calls = []

    def interrupt_second(path, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, **kwargs)

    monkeypatch.setattr(tfrecord, "video_to_sequence_example", interrupt_second)
    assert tfrecord.main(["cut.tfrecord", "videos/ride/bikes.mp4", "videos/walk/carphone.mp4", "--fps", "2"]) == 130
    assert "interrupted; cut.tfrecord was not written" in capsys.readouterr().err
    assert leftovers("cut.tfrecord") == []
