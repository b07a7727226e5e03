"""How a step's progress lines are buffered in its Ray worker (`orchestrator.execution.progress`):
in order, at most a fixed number per flush with the latest kept, sent by a timer while the step
runs, the rest handed back when it ends. No Ray here: ``send`` collects what would go to the sink;
tests/integration/test_ray_progress.py runs the same through a real Ray."""

from __future__ import annotations

import pickle
import time

from orchestrator.execution.progress import (
    FLUSH_S,
    MAX_LINES_PER_FLUSH,
    STALE_CHANNEL_S,
    Flusher,
    LineBuffer,
    SinkLines,
    ToSink,
    left_out_line,
)


class Sent:
    """What a buffer sent, batch by batch (``send`` returns the batch number)."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[str]]] = []

    def __call__(self, step_id: str, lines: list[str]) -> int:
        self.batches.append((step_id, list(lines)))
        return len(self.batches)

    @property
    def lines(self) -> list[str]:
        return [line for _, batch in self.batches for line in batch]


def test_lines_wait_in_order_and_leave_with_the_step() -> None:
    sent = Sent()
    buffer = LineBuffer("s", sent)
    for i in range(5):
        buffer.add(f"line {i}")
    assert sent.batches == []  # nothing leaves per line
    assert buffer.close() == [f"line {i}" for i in range(5)]
    assert buffer.sent == 0 and sent.batches == []


def test_a_flush_sends_one_batch_and_the_end_keeps_the_rest() -> None:
    sent = Sent()
    buffer = LineBuffer("s", sent)
    buffer.add("a")
    buffer.add("b")
    buffer.flush()
    buffer.flush()  # nothing new: nothing sent
    buffer.add("c")
    assert sent.batches == [("s", ["a", "b"])]
    assert buffer.sent == 2 and buffer.last_sent == 1
    assert buffer.close() == ["c"]


def test_over_the_cap_the_latest_lines_stay_after_a_count_of_the_rest() -> None:
    sent = Sent()
    buffer = LineBuffer("s", sent, cap=3)
    for i in range(10):
        buffer.add(f"line {i}")
    buffer.flush()
    buffer.add("line 10")
    assert sent.lines == [left_out_line(7), "line 7", "line 8", "line 9"]
    assert buffer.close() == ["line 10"]  # the count starts again after each flush


def test_the_cap_line_says_how_many_and_where_they_are() -> None:
    assert left_out_line(1) == (
        f"... 1 line left out (more than {MAX_LINES_PER_FLUSH} in {FLUSH_S:g} s; "
        "every line is in the step's worker log)"
    )
    assert left_out_line(7).startswith("... 7 lines left out")


def test_a_failing_step_sends_its_last_lines() -> None:
    sent = Sent()
    buffer = LineBuffer("s", sent)
    buffer.add("loading")
    buffer.add("about to fail")
    assert buffer.close(send=True) == []
    assert sent.batches == [("s", ["loading", "about to fail"])]


def test_lines_logged_after_the_step_ended_are_sent_at_once() -> None:
    sent = Sent()
    buffer = LineBuffer("s", sent)
    buffer.close()
    buffer.add("late")  # e.g. a thread the step left running
    assert sent.batches == [("s", ["late"])]


def test_the_flusher_sends_a_running_steps_lines_on_its_own() -> None:
    sent = Sent()
    flusher = Flusher()
    buffer = LineBuffer("s", sent)
    flusher.watch(buffer)
    buffer.add("epoch 1/3")
    deadline = time.monotonic() + 10 * FLUSH_S
    while not sent.batches and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sent.batches == [("s", ["epoch 1/3"])]
    flusher.forget(buffer)
    buffer.add("epoch 2/3")
    time.sleep(3 * FLUSH_S)
    assert sent.batches == [("s", ["epoch 1/3"])]  # forgotten: the step's end takes the rest
    assert buffer.close() == ["epoch 2/3"]


def test_a_sink_report_travels_as_its_name_with_no_lines() -> None:
    report = ToSink("kdorch-progress-x", "ns", "run-1")
    report._buffers["s"] = LineBuffer("s", Sent())
    report._buffers["s"].add("kept here")
    copy = pickle.loads(pickle.dumps(report))
    assert (copy.name, copy.namespace, copy.channel) == ("kdorch-progress-x", "ns", "run-1")
    assert copy._buffers == {}
    finished = copy.finish("s", result=42)  # a step that logged nothing in this copy
    assert (finished.result, finished.lines, finished.sent) == (42, [], 0)


def test_the_flusher_thread_ends_when_no_step_has_lines_open() -> None:
    flusher = Flusher()
    buffer = LineBuffer("s", Sent())
    flusher.watch(buffer)
    thread = flusher._thread
    assert thread is not None and thread.is_alive()
    flusher.forget(buffer)
    thread.join(timeout=10 * FLUSH_S)
    assert not thread.is_alive() and flusher._thread is None
    flusher.watch(buffer)  # the next step's lines start it again
    assert flusher._thread is not None and flusher._thread.is_alive()
    flusher.forget(buffer)


def test_a_sink_drops_channels_nobody_drained_for_an_hour() -> None:
    """A warm cluster's sink outlives runs: the lines of a run whose driver died go, in time."""
    now = [0.0]
    sink = SinkLines(clock=lambda: now[0])
    sink.push("dead run", "s", ["never drained"])
    sink.push("live run", "s", ["first"])
    now[0] = STALE_CHANNEL_S - 1
    sink.push("live run", "s", ["second"])
    assert sink.drain("live run") == [("s", "first"), ("s", "second")]
    assert sink.drain("live run") == []
    now[0] = STALE_CHANNEL_S + 1
    sink.push("new run", "t", ["hello"])  # each push sweeps the stale channels
    assert sink.drain("dead run") == []
    assert sink.drain("new run") == [("t", "hello")]
    assert sink.lines == {} and sink.pushed == {}
