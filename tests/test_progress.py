"""The one progress display (cvrl_fast._progress): a bar on a TTY, plain lines elsewhere."""
import io

from cvrl_fast._progress import Progress


def test_progress_plain_lines_in_a_log():
    out = io.StringIO()
    with Progress("extract", 3, unit="videos", stream=out, every_seconds=3600) as p:
        for i in range(1, 4):
            p.update(i, skipped=0)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text and "\b" not in text
    lines = text.splitlines()
    # The first update and the last one, nothing in between (every_seconds not reached), no duplicate at close.
    assert [line.split(",")[0] for line in lines] == ["extract: 1/3 videos", "extract: 3/3 videos"]
    assert lines[-1].endswith("skipped 0")


def test_progress_plain_lines_in_a_log_fails_to_stay_silent_when_unfinished():
    """close() prints the last state when the work stopped early, so a log never ends mid-count."""
    out = io.StringIO()
    p = Progress("pretrain", 10, unit="steps", stream=out, every_seconds=3600)
    p.update(1)
    p.update(4, loss=1.25)
    p.close()
    assert out.getvalue().splitlines()[-1].startswith("pretrain: 4/10 steps")
    assert "loss 1.25" in out.getvalue().splitlines()[-1]


def test_progress_bar_on_a_tty_and_log_lines_between():
    out = io.StringIO()
    p = Progress("pretrain", 4, unit="steps", stream=out, tty=True)
    p.update(1, loss=2.0)
    p.write("checkpoint saved")
    p.update(4, loss=1.0)
    p.close()
    text = out.getvalue()
    assert "\x1b" not in text and "\b" not in text
    # The log line sits on a line of its own: the bar was cleared before it and redrawn after it.
    assert "\rcheckpoint saved\n" in text
    assert text.endswith("\n") and text.count("\n") == 2
    assert "[" + "#" * 24 + "] pretrain: 4/4 steps" in text
