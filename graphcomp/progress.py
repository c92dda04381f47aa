"""Progress of long loops (Krylov methods, the demos' training): a bar and a callback.

A loop makes one `Progress` and calls `update(iteration, detail, **state)` after each
iteration. With `enabled=True` progress is shown on stderr: as a tqdm bar when tqdm is
installed (`pip install "graphcomp[progress]"`), else as a plain line, redrawn in place on a
terminal and printed every few seconds (and at the end) elsewhere. `callback(state)`, when
given, is called at every update, shown or not, with a `State`: `state.iteration` (iterations
done, counting from 1), `state.total` (the most there can be, None if unknown) and the loop's
own fields, which each function that takes `callback=` documents. A loop that ends before its
total (it converged early) closes its bar at the count it reached: 28/28, not 28/2410.
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace


class State(SimpleNamespace):
    """One iteration's state, as a callback gets it: `iteration`, `total` and the loop's fields."""


def tqdm_class():
    """tqdm's bar class, or None when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class _TqdmBar:
    def __init__(self, tqdm, label, total, stream):
        self.bar = tqdm(total=total, desc=label, file=stream, leave=True, dynamic_ncols=True)

    def show(self, iteration, detail):
        if detail:
            self.bar.set_postfix_str(detail, refresh=False)
        self.bar.update(iteration - self.bar.n)

    def finish_at(self, iteration):
        self.bar.total = iteration

    def close(self):
        self.bar.close()


class _PlainLine:
    """`label [####......] 40/100  detail` on the stream: redrawn in place at most five times
    a second on a terminal; elsewhere (a log, a pipe) a new line every `interval` seconds."""

    def __init__(self, label, total, stream, interval=None, width=30):
        self.label, self.total, self.stream, self.width = label, total, stream, width
        self.interactive = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.2 if self.interactive else 5.0)
        self.last_time = None
        self.pending = None  # the latest update not written yet
        self.latest = None  # the latest update, written or not

    def _line(self, iteration, detail):
        if self.total:
            filled = min(self.width, round(self.width * iteration / self.total))
            text = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {iteration}/{self.total}"
        else:
            text = f"{self.label}: {iteration}"
        return text + (f"  {detail}" if detail else "")

    def _write(self, iteration, detail):
        line = self._line(iteration, detail)
        self.stream.write(f"\r{line}\033[K" if self.interactive else line + "\n")
        self.stream.flush()
        self.last_time, self.pending = time.monotonic(), None

    def show(self, iteration, detail):
        self.latest = (iteration, detail)
        due = self.last_time is None or time.monotonic() - self.last_time >= self.interval
        if due or iteration == self.total:
            self._write(iteration, detail)
        else:
            self.pending = (iteration, detail)

    def finish_at(self, iteration):
        self.total = iteration
        self.pending = self.latest  # written again, full

    def close(self):
        if self.pending is not None:
            self._write(*self.pending)
        if self.interactive and self.last_time is not None:
            self.stream.write("\n")
            self.stream.flush()


class Progress:
    """Reports one loop: `update(iteration, detail="", **state)` after each iteration, then
    `close()` (or use it as a context manager).

    `enabled`: show progress on `stream` (default: sys.stderr at the time of the call);
    `callback`: called as `callback(State(iteration=..., total=..., **state))` at every
    update; `interval`: seconds between plain lines when tqdm is absent.
    """

    def __init__(self, label, total=None, enabled=False, callback=None, stream=None, interval=None):
        self.label, self.total, self.callback = label, total, callback
        self.iteration = 0
        self.display = None
        if enabled:
            stream = sys.stderr if stream is None else stream
            tqdm = tqdm_class()
            self.display = (_TqdmBar(tqdm, label, total, stream) if tqdm is not None
                            else _PlainLine(label, total, stream, interval))

    def update(self, iteration, detail="", **state):
        self.iteration = iteration
        if self.callback is not None:
            self.callback(State(iteration=iteration, total=self.total, **state))
        if self.display is not None:
            self.display.show(iteration, detail)

    def close(self, finished=True):
        """End the display. A finished loop that stopped before `total` (it converged) ends at
        the count it reached, as complete; `finished=False` (an error) leaves it where it was."""
        if self.display is not None:
            if finished and self.total and 0 < self.iteration < self.total:
                self.display.finish_at(self.iteration)
            self.display.close()
            self.display = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc_info):
        self.close(finished=exc_type is None)
