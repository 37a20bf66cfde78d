"""Progress of a long loop: a tqdm bar on a terminal, plain timed lines in a log.

A tqdm bar redraws itself with a carriage return on every update. On a terminal that is one line;
in a file (CI, `make demo > log`, nohup) every redraw stays, and a demo's log becomes a megabyte
of bars. So `progress` looks at the stream: a terminal gets the bar, anything else gets one line
every `interval_s` seconds plus one at the end, e.g.

    train: step 120/1000 (12%) 9.8 step/s loss 1.2345 elapsed 0:00:12 eta 0:01:30

Both kinds (and the silent one, `enabled=False`) have the same small interface: `update(n)`,
`set_postfix(**values)`, `write(message)` (a log line that does not tear the bar), `close()`,
and use as a context manager.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO


class Progress(Protocol):
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **values: Any) -> None: ...
    def write(self, message: str) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Progress: ...
    def __exit__(self, *exc: object) -> None: ...


def progress(
    total: int | None,
    desc: str,
    *,
    stream: TextIO | None = None,
    interval_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    unit: str = "step",
    initial: int = 0,
    enabled: bool = True,
    leave: bool = True,
) -> Progress:
    """Progress of `total` units (`initial` already done), shown on `stream` (default stderr).

    A tqdm bar when `stream.isatty()`; otherwise `LineProgress` (a line every `interval_s` seconds
    of `clock`, and one at `close`). `enabled=False` shows nothing but still `write`s messages.
    `leave=False` lets a terminal bar vanish when done (a log keeps its last line).
    """
    stream = sys.stderr if stream is None else stream
    if not enabled:
        return _Silent(stream)
    if _isatty(stream):
        return _Bar(total, desc, stream, unit=unit, initial=initial, leave=leave)
    return LineProgress(total, desc, stream, interval_s=interval_s, clock=clock, unit=unit, initial=initial)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _format_value(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _clock_time(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


class _Base:
    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Silent(_Base):
    """Progress disabled: nothing is shown, but `write` still prints its message."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def write(self, message: str) -> None:
        print(message, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class _Bar(_Base):
    """The tqdm bar, for terminals."""

    def __init__(self, total, desc, stream, *, unit, initial, leave):
        from tqdm import tqdm

        self.stream = stream
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit=unit,
            file=stream,
            leave=leave,
            dynamic_ncols=True,
        )

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_postfix(self, **values: Any) -> None:
        self.bar.set_postfix({k: _format_value(v) for k, v in values.items()}, refresh=False)

    def write(self, message: str) -> None:
        self.bar.write(message, file=self.stream)

    def close(self) -> None:
        self.bar.close()


class LineProgress(_Base):
    """Plain progress lines for logs: one per `interval_s` seconds at most, and one at `close`."""

    def __init__(self, total, desc, stream, *, interval_s=10.0, clock=time.monotonic, unit="step", initial=0):
        self.total, self.desc, self.stream, self.unit = total, desc, stream, unit
        self.interval_s, self.clock = interval_s, clock
        self.n = self.initial = initial
        self.postfix: dict[str, Any] = {}
        self.start = self.last_line = clock()
        self.shown: int | None = None  # the count the last line showed
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last_line >= self.interval_s:
            self._line(now)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = dict(values)

    def write(self, message: str) -> None:
        print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.shown != self.n:
            self._line(self.clock())

    def format_line(self, now: float) -> str:
        """`desc: unit n/total (pct%) rate [key value ...] elapsed H:MM:SS eta H:MM:SS`."""
        elapsed = now - self.start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.unit} {self.n}"]
        if self.total:
            parts[0] += f"/{self.total} ({100 * self.n // self.total}%)"
        if rate >= 1:
            parts.append(f"{rate:.1f} {self.unit}/s")
        elif rate > 0:
            parts.append(f"{1 / rate:.1f} s/{self.unit}")
        parts += [f"{k} {_format_value(v)}" for k, v in self.postfix.items()]
        parts.append(f"elapsed {_clock_time(elapsed)}")
        if self.total and rate > 0:
            parts.append(f"eta {_clock_time(max(self.total - self.n, 0) / rate)}")
        return " ".join(parts)

    def _line(self, now: float) -> None:
        print(self.format_line(now), file=self.stream, flush=True)
        self.last_line, self.shown = now, self.n
