"""Reading jwt-edge's own lines out of an Envoy log (`--component-log-level wasm:debug`).

Envoy prefixes each line with its time and the thread that wrote it:

    [2026-11-22 22:58:35.891][10483][debug][wasm] [source/.../context.cc:1148] wasm log \
        jwt_edge jwt_edge: <message>          (one line)

One thread runs one jwt-edge VM (each worker, plus Envoy's main thread), so the thread id
tells the VMs apart.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterator

_LINE = re.compile(
    r"^\[[^\]]* (\d+):(\d+):([\d.]+)\]\[(\d+)\]\[\w+\]\[wasm\] .*?wasm log [^:]*: (.*)$")
_HOLDS = re.compile(r"keys loaded, \d+ skipped \(version (\d+)\)|installed version (\d+) ")


def lines(text: str) -> Iterator[tuple[float, str, str]]:
    """(seconds since midnight, thread id, message) of each jwt-edge log line."""
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            h, mi, s, tid, msg = m.groups()
            yield int(h) * 3600 + int(mi) * 60 + float(s), tid, msg


def vm_threads(text: str) -> set[str]:
    """Threads that run a configured jwt-edge VM."""
    return {tid for _, tid, msg in lines(text) if "jwt-edge configured" in msg}


def key_set_holders(text: str) -> dict[int, set[str]]:
    """Key-set version -> threads whose VM holds it (fetched it, or installed it from shared
    data)."""
    out: dict[int, set[str]] = defaultdict(set)
    for _, tid, msg in lines(text):
        m = _HOLDS.search(msg)
        if m:
            out[int(m.group(1) or m.group(2))].add(tid)
    return out


def all_vms_hold(text: str, version: int) -> bool:
    """True when every VM holds key-set `version` or a later one. (A VM may skip a version:
    with a short cache_duration two fetches can fall between two of its ticks.)"""
    vms = vm_threads(text)
    held = set().union(*(tids for v, tids in key_set_holders(text).items() if v >= version))
    return bool(vms) and held >= vms
