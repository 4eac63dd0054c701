"""Waiting in tests: one helper instead of fixed sleeps and hand-written polling loops."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

import pytest

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, what: str = "a condition",
             interval: float = 0.05) -> T:
    """Calls ``predicate`` until it returns something true and returns that; after ``timeout``
    seconds the test fails, naming ``what`` it waited for.  The predicate is called at least once,
    and last at the deadline; the pause between calls grows from ``interval`` to a quarter of a second."""
    deadline = time.monotonic() + timeout
    pause = interval
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last seen: {value!r})")
        time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
        pause = min(pause * 1.5, 0.25)
