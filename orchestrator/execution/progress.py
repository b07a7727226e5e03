"""Progress lines from running steps (`StepContext.log`) back to the console that runs them.

In a Ray task a component's log lines would only reach the worker's log file. They travel
instead, without a per-line or per-step round trip (each costs a step milliseconds):

- In the worker, `ToSink` buffers a step's lines (`LineBuffer`). A daemon thread sends what
  running steps buffered every `FLUSH_S` seconds, as one call to a `ProgressSink` actor, so a
  long step's lines still show while it runs; at most `MAX_LINES_PER_FLUSH` lines of a step per
  flush are carried (the latest ones, after a line saying how many were left out: every line
  is still in the worker's log).
- When the step ends, its last lines (those not flushed yet) come back with its result
  (`StepReturn`); a step that had flushed lines first waits until the sink holds them, and the
  driver drains the sink before handing on the last lines, so a step's lines keep their order
  and come before its end. A step that fails pushes its last lines to the sink and waits, and
  the driver drains the sink before it reports the failure: a failing step's last lines are
  not lost. (A worker that is killed loses at most its last `FLUSH_S` seconds of lines.)
- The Ray backend drains the sink at most every `ray_backend.PROGRESS_POLL_S` while steps
  run, and hands the lines to the scheduler, which emits them as ``progress`` events
  (`kdorch run` prints them; the run's events keep them).

A step that never runs longer than `FLUSH_S` therefore never calls the sink. The in-process
backend calls the scheduler directly (no buffer, no cap: nothing to save there).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("kdorch")

Report = Callable[[str, str], None]  # (step_id, message)
Send = Callable[[str, list[str]], Any]  # (step_id, lines) -> something `wait_sent` can wait on

#: How often a worker sends the lines its running steps buffered.
FLUSH_S = 0.5
#: At most this many lines of one step per flush (so at most 2 x this many a second).
MAX_LINES_PER_FLUSH = 50
#: How long a step waits, at its end, for its earlier lines to reach the sink.
SENT_WAIT_S = 5.0


def left_out_line(count: int) -> str:
    return (
        f"... {count} line{'s' if count != 1 else ''} left out (more than "
        f"{MAX_LINES_PER_FLUSH} in {FLUSH_S:g} s; every line is in the step's worker log)"
    )


class LineBuffer:
    """One step's progress lines in its worker, until they are flushed or the step ends.

    ``send`` carries a batch of lines (to the sink); it is called under the buffer's lock, so
    batches leave in the order the lines were logged.
    """

    def __init__(self, step_id: str, send: Send, cap: int = MAX_LINES_PER_FLUSH):
        self.step_id = step_id
        self._send = send
        self._lines: deque[str] = deque(maxlen=cap)
        self._left_out = 0
        self._lock = threading.Lock()
        self._closed = False
        self.sent = 0  # lines handed to ``send`` so far
        self.last_sent: Any = None  # what the last ``send`` returned

    def add(self, message: str) -> None:
        with self._lock:
            if len(self._lines) == self._lines.maxlen:
                self._left_out += 1  # the deque drops the oldest line: the latest ones stay
            self._lines.append(message)
            if self._closed:  # a thread of the step still logging after it ended: send now
                self._flush_locked()

    def _take(self) -> list[str]:
        lines = list(self._lines)
        self._lines.clear()
        if self._left_out:
            lines.insert(0, left_out_line(self._left_out))
            self._left_out = 0
        return lines

    def _flush_locked(self) -> None:
        lines = self._take()
        if lines:
            self.last_sent = self._send(self.step_id, lines)
            self.sent += len(lines)

    def flush(self) -> None:
        """Send the lines buffered so far (the flusher thread calls this every `FLUSH_S`)."""
        with self._lock:
            self._flush_locked()

    def close(self, *, send: bool = False) -> list[str]:
        """The step ended: the lines not sent yet (``send``: sent now, and none returned).
        Lines added later are sent as they come."""
        with self._lock:
            self._closed = True
            if send:
                self._flush_locked()
                return []
            return self._take()


class Flusher:
    """A daemon thread in a worker process that flushes the open buffers every `FLUSH_S`; it
    ends when no step of the process has a buffer open (and starts again with the next)."""

    def __init__(self) -> None:
        self._buffers: weakref.WeakSet[LineBuffer] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, buffer: LineBuffer) -> None:
        with self._lock:
            self._buffers.add(buffer)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="kdorch-progress", daemon=True
                )
                self._thread.start()

    def forget(self, buffer: LineBuffer) -> None:
        with self._lock:
            self._buffers.discard(buffer)

    def _loop(self) -> None:
        while True:
            time.sleep(FLUSH_S)
            with self._lock:
                buffers = list(self._buffers)
                if not buffers:  # an idle worker keeps no thread waking up
                    self._thread = None
                    return
            for buffer in buffers:
                try:
                    buffer.flush()
                except Exception:  # progress is informative: never stop flushing for it
                    log.debug("progress lines of %s dropped", buffer.step_id, exc_info=True)


_flusher = Flusher()


@dataclass(frozen=True)
class StepReturn:
    """What a step's Ray task returns: its result and the progress lines it had not sent.

    ``sent`` > 0: earlier lines went to the sink (and are there by now): drain it first."""

    result: Any
    step_id: str = ""
    lines: list[str] = field(default_factory=list)
    sent: int = 0


class SinkLines:
    """What a `ProgressSink` holds: lines of running steps, per channel (one per run), until a
    driver drains them. A warm cluster's sink outlives runs, and a run whose driver died never
    drains its channel: a channel nobody drained or pushed to for `STALE_CHANNEL_S` is dropped
    at the next push."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.lines: dict[str, list[tuple[str, str]]] = {}
        self.pushed: dict[str, float] = {}  # channel -> when lines last came
        self.clock = clock

    def push(self, channel: str, step_id: str, lines: list[str]) -> None:
        now = self.clock()
        for stale in [c for c, at in self.pushed.items() if now - at > STALE_CHANNEL_S]:
            self.lines.pop(stale, None)
            self.pushed.pop(stale, None)
        self.lines.setdefault(channel, []).extend((step_id, line) for line in lines)
        self.pushed[channel] = now

    def drain(self, channel: str) -> list[tuple[str, str]]:
        self.pushed.pop(channel, None)
        return self.lines.pop(channel, [])


def sink_class() -> Any:
    import ray

    @ray.remote(num_cpus=0, max_restarts=0)
    class ProgressSink(SinkLines):
        """`SinkLines` as an actor: steps push to it, drivers drain it."""

    return ProgressSink


#: A channel of a long-lived sink that nobody drained for this long is dropped (`ProgressSink`).
STALE_CHANNEL_S = 3600.0
#: The warm cluster's sink (`kdorch up`), shared by every run on it: (name, namespace). The
#: version in the name changes with `ProgressSink`'s methods, so a newer kdorch never calls an
#: older sink that a long-lived head still runs.
WARM_SINK = ("kdorch-progress-v1", "kdorch")


#: This driver's sink: (Ray job id, actor handle, name, namespace).
_driver_sink: tuple[str, Any, str, str] | None = None


def shared_sink(warm: bool = False) -> tuple[Any, str, str]:
    """The `ProgressSink` of this driver's Ray session, started on first use and shared by its
    runs (each drains its own channel): an actor is a worker process, whose start costs a run
    of small steps about half a second of CPU. Returns (handle, name, namespace).

    ``warm``: the session is on the warm cluster of `kdorch up`, whose sink (`WARM_SINK`, a
    detached actor) serves every run on it: the first run starts it, the others find it by
    name, so a run there starts no actor (its start, and its shutdown when the run's job ends,
    cost a one-step run ~0.3-0.6 s on 2 cores)."""
    global _driver_sink
    import ray

    context = ray.get_runtime_context()
    job = context.get_job_id()
    if _driver_sink is None or _driver_sink[0] != job:  # none yet, or another Ray session's
        if warm:
            name, namespace = WARM_SINK
            options = {"lifetime": "detached", "get_if_exists": True}
        else:
            name, namespace = f"kdorch-progress-{uuid.uuid4().hex}", context.namespace
            options = {}
        handle = sink_class().options(name=name, namespace=namespace, **options).remote()
        _driver_sink = (job, handle, name, namespace)
    return _driver_sink[1:]


def forget_sink() -> None:
    """Start a new sink next time (this one did not answer)."""
    global _driver_sink
    _driver_sink = None


#: Sink handles looked up in this worker process, by actor name.
_sinks: dict[tuple[str, str | None], Any] = {}


def _sink(name: str, namespace: str | None) -> Any:
    handle = _sinks.get((name, namespace))
    if handle is None:
        import ray

        handle = _sinks[(name, namespace)] = ray.get_actor(name, namespace=namespace)
    return handle


class ToSink:
    """A picklable `Report` for steps in Ray tasks: buffers each step's lines (`LineBuffer`) and
    sends them to ``channel`` of the `ProgressSink` actor named ``name``; it never waits or
    fails a step.

    It carries the sink's name, not its handle: an actor handle in every task's arguments costs
    each step a registration, and most steps end before they have anything to send."""

    def __init__(self, name: str, namespace: str | None, channel: str):
        self.name = name
        self.namespace = namespace
        self.channel = channel
        self._buffers: dict[str, LineBuffer] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "channel": self.channel}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._buffers = {}  # each unpickled copy (one per task) buffers its own step's lines

    def _send(self, step_id: str, lines: list[str]) -> Any:
        try:
            return _sink(self.name, self.namespace).push.remote(self.channel, step_id, lines)
        except Exception:  # progress is informative: never fail a step for it
            log.debug("%d progress lines of %s dropped", len(lines), step_id, exc_info=True)
            return None

    def __call__(self, step_id: str, message: str) -> None:
        buffer = self._buffers.get(step_id)
        if buffer is None:
            buffer = self._buffers[step_id] = LineBuffer(step_id, self._send)
            _flusher.watch(buffer)
        buffer.add(message)

    def finish(self, step_id: str, result: Any) -> StepReturn:
        """The step ended with ``result``: its last lines travel with it."""
        buffer = self._buffers.get(step_id)
        if buffer is None:
            return StepReturn(result=result, step_id=step_id)
        _flusher.forget(buffer)
        lines = buffer.close()
        if buffer.sent:
            wait_sent(buffer.last_sent)
        return StepReturn(result=result, step_id=step_id, lines=lines, sent=buffer.sent)

    def fail(self, step_id: str) -> None:
        """The step raised: send its last lines to the sink now, and wait until they are there
        (the driver drains the sink before it reports the failure)."""
        buffer = self._buffers.get(step_id)
        if buffer is None:
            return
        _flusher.forget(buffer)
        buffer.close(send=True)
        wait_sent(buffer.last_sent)


def wait_sent(ref: Any) -> None:
    """Wait (at most `SENT_WAIT_S`) until a push has reached the sink."""
    if ref is None:
        return
    try:
        import ray

        ray.get(ref, timeout=SENT_WAIT_S)
    except Exception:  # progress is informative: never fail a step for it
        log.debug("progress lines may arrive late", exc_info=True)


def worker_logging() -> None:
    """Give the ``kdorch`` logger a handler in a Ray worker, so `StepContext.log` lines also
    land in the worker's log file (the dashboard's task logs)."""
    logger = logging.getLogger("kdorch")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
