"""`alpamayo_jax.console.progress`: plain timed lines in logs, the tqdm bar on terminals."""

from __future__ import annotations

import io

from alpamayo_jax.console import progress


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_per_interval_and_one_at_the_end():
    stream, clock = io.StringIO(), FakeClock()
    with progress(1000, "train", stream=stream, interval_s=10.0, clock=clock) as bar:
        for _ in range(200):  # 8 steps a second: lines after steps 80 and 160 (10 s and 20 s)
            clock.now += 0.125
            bar.update()
            bar.set_postfix(loss=1.23454)
        bar.update(10)  # no time passed: no line
        assert stream.getvalue().splitlines() == [
            "train: step 80/1000 (8%) 8.0 step/s loss 1.2345 elapsed 0:00:10 eta 0:01:55",
            "train: step 160/1000 (16%) 8.0 step/s loss 1.2345 elapsed 0:00:20 eta 0:01:45",
        ]
    lines = stream.getvalue().splitlines()
    assert lines[2:] == ["train: step 210/1000 (21%) 8.4 step/s loss 1.2345 elapsed 0:00:25 eta 0:01:34"]
    assert "\r" not in stream.getvalue()


def test_the_last_line_is_not_repeated_and_slow_loops_show_seconds_per_unit():
    stream, clock = io.StringIO(), FakeClock()
    bar = progress(2, "synth train", stream=stream, interval_s=10.0, clock=clock, unit="sample")
    clock.now += 30
    bar.update()
    clock.now += 30
    bar.update()
    bar.close()
    bar.close()
    assert stream.getvalue().splitlines() == [
        "synth train: sample 1/2 (50%) 30.0 s/sample elapsed 0:00:30 eta 0:00:30",
        "synth train: sample 2/2 (100%) 30.0 s/sample elapsed 0:01:00 eta 0:00:00",
    ]


def test_a_resumed_run_counts_its_rate_from_where_it_started():
    stream, clock = io.StringIO(), FakeClock()
    with progress(100, "train", stream=stream, clock=clock, initial=50) as bar:
        clock.now += 5
        bar.update(10)
        bar.write("step 60 eval: loss 0.5000")
    assert stream.getvalue().splitlines() == [
        "step 60 eval: loss 0.5000",
        "train: step 60/100 (60%) 2.0 step/s elapsed 0:00:05 eta 0:00:20",
    ]


def test_disabled_progress_prints_nothing_but_messages():
    stream = io.StringIO()
    with progress(10, "train", stream=stream, enabled=False) as bar:
        bar.update(10)
        bar.set_postfix(loss=1.0)
        bar.write("hello")
    assert stream.getvalue() == "hello\n"


def test_a_terminal_gets_the_tqdm_bar():
    from tqdm import tqdm

    stream = Terminal()
    with progress(4, "train", stream=stream) as bar:
        assert isinstance(bar.bar, tqdm)
        bar.update(2)
        bar.set_postfix(loss=0.5)
        bar.update(2)
    out = stream.getvalue()
    assert "\r" in out  # tqdm redraws in place
    assert "train: 100%" in out and "4/4" in out and "loss=0.5000" in out
