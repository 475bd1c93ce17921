"""Polling and metric reads shared by the suites."""

from __future__ import annotations

import time


def wait_until(fn, timeout: float, interval: float = 0.05):
    """Calls `fn` until it returns a truthy value or `timeout` passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def stat(envoy, name: str, default=0):
    """A jwt-edge metric from admin `/stats` (`wasmcustom.` prefix added)."""
    return envoy.stats().get("wasmcustom." + name, default)
