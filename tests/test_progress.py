"""The progress line (pipeline.progress): total, percentage, ETA, one final line off a terminal; and the
random-trunk warning as one plain line."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from sal3d.pipeline import progress as progress_module
from sal3d.pipeline.progress import Progress, clock


class Clock:
    """A perf_counter the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Vgg(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(*[torch.nn.Identity() for _ in range(31)])


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def fake_clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "perf_counter", fake)
    return fake


def test_clock_format():
    assert clock(0) == "0:00" and clock(83.4) == "1:23" and clock(3 * 3600 + 5) == "3:00:05"
    assert clock(float("inf")) == "?"


def test_off_a_terminal_a_short_run_prints_its_final_line_only(fake_clock):
    stream = io.StringIO()
    progress = Progress("extract", total=40, unit="frames", every=10.0, stream=stream)
    for _ in range(4):
        fake_clock.now += 1.0
        progress.update(10, note="0601")
    progress.close()
    progress.close()  # a second close (a finally after an explicit one) adds nothing
    lines = stream.getvalue().splitlines()
    assert lines == ["extract: 100.0% 40/40 frames, 10.0 frames/s, 0:04 in all 0601"]


def test_off_a_terminal_lines_every_so_often_with_percentage_and_eta(fake_clock):
    stream = io.StringIO()
    progress = Progress("predict", total=100, unit="frames", every=10.0, stream=stream)
    for _ in range(50):  # a frame a second for 50 s
        fake_clock.now += 1.0
        progress.update(1)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 6 and len(set(lines)) == 6  # at 10, 20, 30, 40, 50 s, then the final line
    assert lines[0] == "predict:  10.0% 10/100 frames, 1.0 frames/s, 0:10 elapsed, ETA 1:30"
    assert lines[4] == "predict:  50.0% 50/100 frames, 1.0 frames/s, 0:50 elapsed, ETA 0:50"
    assert lines[5] == "predict:  50.0% 50/100 frames, 1.0 frames/s, 0:50 in all"


def test_eta_follows_the_recent_rate_not_a_slow_start(fake_clock):
    progress = Progress("train", total=1000, unit="windows", stream=io.StringIO())
    fake_clock.now += 100.0  # a slow start: 100 s before the first unit
    progress.update(10)
    for _ in range(60):  # then 10 windows a second
        fake_clock.now += 1.0
        progress.update(10)
    assert progress.rate == pytest.approx(610 / 160)
    assert progress.recent_rate == pytest.approx(10.0)
    assert progress.remaining == pytest.approx(39.0)


def test_a_total_learnt_part_by_part_is_an_estimate_until_every_part_is_known(fake_clock):
    stream = io.StringIO()
    progress = Progress("extract", unit="frames", every=0.0, stream=stream)
    progress.parts(4)
    progress.part_size(10)
    progress.part_size(20)
    assert progress.total == 60 and progress.estimated  # 30 known + 2 x their mean 15
    fake_clock.now += 1.0
    progress.update(15)
    assert "15/~60 frames" in stream.getvalue() and "25.0%" in stream.getvalue()
    progress.part_size(5)
    progress.part_size(5)
    assert progress.total == 40 and not progress.estimated
    progress.close()
    assert stream.getvalue().splitlines()[-1].startswith("extract:  37.5% 15/40 frames")


def test_on_a_terminal_the_line_is_redrawn_and_ended_once(fake_clock):
    stream = Terminal()
    progress = Progress("evaluate", total=3, unit="frames", stream=stream)
    for _ in range(3):
        fake_clock.now += 1.0
        progress.update(1)
    progress.close()
    text = stream.getvalue()
    assert text.count("\r\033[K") == 4 and text.endswith("in all\n") and text.count("\n") == 1


def test_random_trunk_warning_is_one_plain_line(capsys, monkeypatch):
    from sal3d.pipeline import trunk
    from sal3d.pipeline.trunk import RANDOM_WARNING, load_trunk, quiet_random_warning

    # A stand-in VGG-16 (building the real one takes seconds and is not what is tested here).
    monkeypatch.setattr(trunk.torchvision.models, "vgg16",
                        lambda weights=None: _Vgg())

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Python warning (with its source line) any more
        load_trunk("random")
        assert capsys.readouterr().err == RANDOM_WARNING + "\n"
        with quiet_random_warning():
            load_trunk("random")
        assert capsys.readouterr().err == ""
    assert "\n" not in RANDOM_WARNING and "TRUNK WEIGHTS ARE RANDOM" in RANDOM_WARNING
