"""Keeping Ray's own chatter out of kdorch's output unless asked for (``--verbose``,
``ray.log_to_driver: true``).

Two sources reach a driver's console whatever ``log_to_driver`` says:

- ``ray.init``'s own log lines ("Started a local Ray instance. View the dashboard at ...", with
  ANSI colour codes): Ray's ``logging_level`` decides; quiet sessions pass WARNING.
- Messages the raylet pushes to every driver, printed by Ray's error-listener thread as
  ``(raylet) ...`` lines on stdout. One of them is routine on small machines — "N PYTHON worker
  processes have been started ..., which is Kx the maximum expected startup concurrency": Ray
  Train, Ray Data and our own step tasks start more workers than cores by design. Quiet sessions
  drop exactly the messages in `ROUTINE`; every other raylet message (a worker killed for
  memory, a node lost) still shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: Raylet messages dropped from a quiet driver's console (they stay in Ray's logs).
ROUTINE = ("worker processes have been started on node",)


def is_routine(data: dict[str, Any]) -> bool:
    """A raylet message in `ROUTINE` (``data`` as Ray's listener passes it)."""
    if data.get("pid") != "raylet":
        return False
    return all(any(text in str(line) for text in ROUTINE) for line in data.get("lines", []))


def ray_logging_level(quiet: bool) -> int:
    """The level for ``ray.init(logging_level=...)``."""
    return logging.WARNING if quiet else logging.INFO


@contextmanager
def routine_raylet_messages_dropped(quiet: bool) -> Iterator[None]:
    """While active (and ``quiet``), the driver does not print `ROUTINE` raylet messages.

    Ray's listener thread looks ``print_to_stdstream`` up in its module on every message, so
    wrapping that one function is enough; it is restored afterwards.
    """
    if not quiet:
        yield
        return
    try:
        import ray._private.worker as ray_worker
    except ImportError:  # another Ray layout: nothing to filter, nothing to break
        yield
        return
    original: Callable[..., Any] | None = getattr(ray_worker, "print_to_stdstream", None)
    if original is None:
        yield
        return

    def filtered(data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if is_routine(data):
            return None
        return original(data, *args, **kwargs)

    ray_worker.print_to_stdstream = filtered
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = original
