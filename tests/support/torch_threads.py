"""One intra-op torch thread for a test module: on a shared 2-core machine two threads spin
against each other (a MobileNet forward pass takes 10 ms on one thread, seconds on two under
load). Use: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")`` with the fixture
imported into the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
