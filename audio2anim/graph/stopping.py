"""SIGINT/SIGTERM for the commands that run graphs (``run``, ``animate``, ``render``).

    with StopSignals() as stops:        # handlers installed for the whole command
        ... Runner(graph).run() ...     # every runner started meanwhile is watched
        if stops.received: ...          # skip what is left to do
    return stops.exit_code(rc)          # 130 after SIGINT, 143 after SIGTERM

- The first signal prints one line and stops the graph that is running (`Runner.stop`: sources
  end their streams, what is in flight drains, every operator's ``close()`` finalizes its
  output); a command checks `StopSignals.received` between its steps and skips the rest.
- The second signal aborts: the running graph is cancelled without draining (operators are still
  closed, so outputs are finalized or removed); outside a graph run it raises `Aborted`.

The handlers are process-wide (``signal.signal``), so they also cover the time between two
graph runs, and each `Runner` registers itself while it runs (`watching`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

EXIT_BY_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}

_ACTIVE: StopSignals | None = None


class Aborted(Exception):
    """A second signal arrived outside a graph run."""


class StopSignals:
    """Process-wide SIGINT/SIGTERM handling for one command (a context manager)."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self._runs: list[tuple[object, asyncio.AbstractEventLoop, asyncio.Task]] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        global _ACTIVE
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        _ACTIVE = self
        return self

    def __exit__(self, *exc) -> None:
        global _ACTIVE
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if _ACTIVE is self:
            _ACTIVE = None

    @property
    def first(self) -> str | None:
        return self.received[0] if self.received else None

    def exit_code(self, rc: int = 0) -> int:
        """``rc`` when it reports a failure, else 130/143 after a signal, else ``rc``."""
        if rc == 0 and self.received:
            return EXIT_BY_SIGNAL.get(self.received[0], 1)
        return rc

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if len(self.received) == 1:
            print(f"\n{name}: stopping (again to abort)", file=sys.stderr, flush=True)
            for runner, loop, _ in self._runs:
                loop.call_soon_threadsafe(runner.stop, name)
            return
        if not self._runs:
            raise Aborted(name)
        for _, loop, task in self._runs:
            loop.call_soon_threadsafe(task.cancel)

    def _watch(self, runner) -> tuple:
        entry = (runner, asyncio.get_running_loop(), asyncio.current_task())
        self._runs.append(entry)
        if self.received:  # a signal came before this run started: stop at once
            runner.stop(self.received[0])
        return entry


@contextlib.contextmanager
def watching(runner):
    """While a `Runner` runs: let the active `StopSignals` (if any) stop or abort it."""
    stops = _ACTIVE
    if stops is None:
        yield
        return
    entry = stops._watch(runner)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            stops._runs.remove(entry)


def active() -> StopSignals | None:
    """The `StopSignals` installed in this process, if any."""
    return _ACTIVE
