"""Reaching an existing Ray cluster with a deadline of our own, and stopping at once on SIGTERM.

``ray.init(address=...)`` towards a cluster that is not there retries inside Ray's C++ client
for minutes ("Failed to connect to GCS ... within 5 seconds", again and again), and while it
does, neither Ctrl-C nor SIGTERM is seen. So before handing an address to Ray, `wait_for_gcs`
checks from Python, with a deadline, that something there speaks gRPC (the GCS and the Ray
Client server both do): a TCP connection and the HTTP/2 preface, answered by a SETTINGS frame.
It tells three cases apart, each with its own message: nothing listening until the deadline, a
server that is not Ray (the dashboard's HTTP port, a web server), an address that is not
``host:port``.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from orchestrator.errors import ClusterUnreachable

#: The client's half of an HTTP/2 handshake: the connection preface and an empty SETTINGS frame.
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS_FRAME = 4
#: Addresses Ray resolves itself (a cluster found on this machine, a new local one).
_RAY_KEYWORDS = ("auto", "local")


def split_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a GCS or Ray Client address; None for Ray's own keywords."""
    text = address.strip()
    if text in _RAY_KEYWORDS:
        return None
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    if scheme in ("http", "https"):
        raise ClusterUnreachable(
            f"--address {address}: an http(s) address is a Ray dashboard (what `kdorch submit`, "
            "`status` and `logs` take); `kdorch run --address` takes the head's GCS address, "
            "host:port (port 6379 unless the cluster chose another; `ray status` prints it)"
        )
    if scheme not in ("", "ray"):
        raise ClusterUnreachable(
            f"--address {address}: unknown scheme '{scheme}://'; give host:port (the GCS) or "
            "ray://host:port (Ray Client)"
        )
    host, colon, port = rest.rstrip("/").rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterUnreachable(
            f"--address {address}: expected host:port (e.g. 10.0.0.5:6379, the head's GCS "
            "address that `ray start --head` prints)"
        )
    return host.strip("[]"), int(port)


def _answers_grpc(host: str, port: int, timeout: float) -> bool:
    """True when the server at host:port answered the HTTP/2 preface; False when it answered
    something else. Raises OSError when nothing could be connected to or nothing came back."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.settimeout(timeout)
        conn.sendall(_PREFACE)
        header = conn.recv(9)
    if not header:
        raise ConnectionResetError("the server closed the connection without answering")
    return len(header) >= 4 and header[3] == _SETTINGS_FRAME


def wait_for_gcs(address: str, timeout_s: float) -> None:
    """Return once ``address`` answers as a gRPC server; raise `ClusterUnreachable` saying what
    was tried, for how long and what to check when it does not within ``timeout_s`` (a head
    that is still starting gets the whole deadline: refusals are retried)."""
    target = split_address(address)
    if target is None:
        return
    host, port = target
    deadline = time.monotonic() + timeout_s
    last: OSError | None = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            if _answers_grpc(host, port, timeout=max(0.2, min(2.0, remaining))):
                return
            raise ClusterUnreachable(
                f"{host}:{port} answers, but not as a Ray cluster (it does not speak gRPC: a "
                "dashboard or web server?); `kdorch run --address` takes the head's GCS "
                "address, host:port (port 6379 unless the cluster chose another)"
            )
        except OSError as error:
            last = error
        if time.monotonic() + 0.25 >= deadline:
            break
        time.sleep(0.25)
    reason = "no answer" if last is None else (last.strerror or str(last) or type(last).__name__)
    raise ClusterUnreachable(
        f"could not reach a Ray cluster at {address} within {timeout_s:g} s ({reason}). "
        f"Check that the cluster is up (`ray status --address {host}:{port}`), that this "
        "machine can reach that host and port, and that the address is the head's GCS port "
        "(6379 by default), not the dashboard's; without --address (and $RAY_ADDRESS) kdorch "
        "starts a local Ray. A slow network: raise ray.connect_timeout_s."
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside: SIGTERM ends the run as Ctrl-C does (the run record says interrupted, an
    embedded Ray is shut down, finished steps stay committed). `claim_sigterm` takes the signal
    back after `ray.init`, which installs a handler of its own. Only the main thread can."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def claim_sigterm() -> None:
    """Re-install the interrupting SIGTERM handler (after ``ray.init`` replaced it)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
