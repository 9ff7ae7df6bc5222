"""pipeline.Pipeline: undo order, undo failures, and signals during the clean-up (real signals, sent to
this process with os.kill; the handlers under test are the real ones)."""
import os
import signal
import threading

import pytest

from condor_seed.pipeline import (Cancelled, Pipeline, Step, Terminated, cancellable_sleep, shielded,
                                  sigterm_as_interrupt)


class Boom(Exception):
    pass


def recorder():
    calls, lines = [], []

    def step(name, undo=True, fail=False, during=None):
        def run():
            calls.append(f"run {name}")
            if fail:
                raise Boom(f"{name} broke")

        def undo_it():
            calls.append(f"undo {name}")
            if during:
                during()

        return Step(name, run, undo_it if undo else None)

    return calls, lines, step


def test_success_runs_in_order_and_undoes_nothing():
    calls, lines, step = recorder()
    Pipeline(report=lines.append).run([step("a"), step("b"), step("c")])
    assert calls == ["run a", "run b", "run c"] and lines == []


def test_failure_undoes_in_reverse_including_the_failed_step_and_reraises():
    calls, lines, step = recorder()
    with pytest.raises(Boom, match="c broke"):
        Pipeline(report=lines.append).run([step("a"), step("b", undo=False), step("c", fail=True), step("d")])
    # c was interrupted part-way, so its own undo runs first; b has none; d never ran.
    assert calls == ["run a", "run b", "run c", "undo c", "undo a"]
    assert lines == ["c: failed (c broke); undoing what this run created"]


def test_a_failing_undo_is_reported_and_the_rest_still_run():
    calls, lines, step = recorder()

    def broken():
        raise RuntimeError("AWS said no")

    with pytest.raises(Boom):
        Pipeline(report=lines.append).run([step("a"), step("b", during=broken), step("c", fail=True)])
    assert calls == ["run a", "run b", "run c", "undo c", "undo b", "undo a"]
    assert any(line.startswith("undo b: FAILED (AWS said no)") and "invoke cleanup" in line for line in lines)


def test_ctrl_c_and_sigterm_during_the_undo_are_noted_not_obeyed():
    calls, lines, step = recorder()
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def signals_arrive():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Boom):  # the original error, not KeyboardInterrupt: the undo was not cut short
        Pipeline(report=lines.append).run([step("a"), step("b", during=signals_arrive), step("c", fail=True)])
    assert calls[-3:] == ["undo c", "undo b", "undo a"]
    assert sum("still cleaning up" in line for line in lines) == 2
    assert {sig: signal.getsignal(sig) for sig in before} == before  # handlers restored


def test_sigterm_during_a_step_undoes_like_ctrl_c():
    calls, lines, step = recorder()

    def terminated():
        calls.append("run b")
        os.kill(os.getpid(), signal.SIGTERM)

    with sigterm_as_interrupt(), pytest.raises(Terminated):
        Pipeline(report=lines.append).run([step("a"), Step("b", terminated, lambda: calls.append("undo b"))])
    assert calls == ["run a", "run b", "undo b", "undo a"]
    assert lines[0] == "b: failed (terminated (SIGTERM)); undoing what this run created"


def test_shielded_raise_after_delivers_a_noted_ctrl_c_once_the_cleanup_is_done():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with shielded(lambda message: None, raise_after=True):
            os.kill(os.getpid(), signal.SIGINT)
            done.append("finished the clean-up")
    assert done == ["finished the clean-up"]


def test_undo_in_a_worker_thread_leaves_signal_handlers_alone():
    calls, lines, step = recorder()
    before = signal.getsignal(signal.SIGINT)
    seen = []

    def worker():
        try:
            Pipeline(report=lines.append).run([step("a", during=lambda: seen.append(signal.getsignal(signal.SIGINT))),
                                               step("b", fail=True)])
        except Boom:
            seen.append("raised")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before, "raised"] and calls[-2:] == ["undo b", "undo a"]


def test_cancellable_sleep_raises_once_cancelled():
    cancel = threading.Event()
    wait = cancellable_sleep(cancel, sleep=lambda seconds: cancel.set())
    with pytest.raises(Cancelled):
        wait(1.0)
