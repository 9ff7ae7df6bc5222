"""Ordered steps that undo themselves: what a build creates, it removes again when it fails.

A `Pipeline` runs `Step`s in order. When a step raises anything (an error, Ctrl-C, SIGTERM turned
into `Terminated`, a cancelled parallel build), the steps that ran, including the one that was
interrupted, are undone in reverse order. Every `undo` must therefore be idempotent and cope with a
partial `run` (e.g. find what it created by tag when it never learnt the id). Undo failures are
reported and the rest still run; the original exception is re-raised afterwards.
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so the same clean-up runs (and `cli` exits non-zero)."""


class Cancelled(KeyboardInterrupt):
    """Another part of a parallel run was interrupted: stop waiting and clean up."""


@dataclass
class Step:
    name: str
    run: Callable[[], Any]
    undo: Callable[[], Any] | None = None


@dataclass
class Pipeline:
    report: Callable[[str], None] = print
    done: list[Step] = field(default_factory=list)

    def run(self, steps: list[Step]) -> None:
        for step in steps:
            self.done.append(step)  # before run: an interrupted step undoes its partial work too
            try:
                step.run()
            except BaseException as exc:
                if any(done.undo for done in self.done):
                    self.report(f"{step.name}: failed ({_describe(exc)}); undoing what this run created")
                self.undo()
                raise

    def undo(self) -> None:
        with shielded(self.report):
            while self.done:
                step = self.done.pop()
                if step.undo is None:
                    continue
                try:
                    step.undo()
                except Exception as exc:  # keep undoing the rest; say what is left
                    self.report(f"undo {step.name}: FAILED ({_describe(exc)}); `invoke cleanup` removes what is left")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return str(exc) or type(exc).__name__


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def shielded(report: Callable[[str], None], raise_after: bool = False,
             hint: str = "a SIGKILL now would leave resources: `invoke cleanup` finds them"):
    """While cleaning up, a Ctrl-C or SIGTERM is noted, not obeyed (main thread only).

    raise_after: once the clean-up has finished normally, a noted signal is raised as
    KeyboardInterrupt (for clean-up that is not already unwinding an error)."""
    if not _in_main_thread():
        yield
        return
    noted_signals: list[int] = []

    def noted(signum, frame):
        noted_signals.append(signum)
        report(f"still cleaning up, please wait ({hint})")

    previous = {sig: signal.signal(sig, noted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if raise_after and noted_signals:
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Turn SIGTERM into `Terminated` in the main thread, so it unwinds like Ctrl-C."""
    if not _in_main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cancellable_sleep(cancel: threading.Event, sleep: Callable[[float], None] = time.sleep) -> Callable[[float], None]:
    """A sleep that raises `Cancelled` once `cancel` is set (parallel builds wait with this)."""

    def wait(seconds: float) -> None:
        if cancel.is_set():
            raise Cancelled()
        if sleep is time.sleep:
            cancel.wait(seconds)
        else:
            sleep(seconds)
        if cancel.is_set():
            raise Cancelled()

    return wait
