#!/usr/bin/env python3
"""Keeps V8 from inlining into the module's cold code (issue #13: memory per proxy).

    indirect_calls.py IN OUT

IN is the optimised module with its names section (mk/wasm-opt.mk builds it so); OUT is the
same module with, in every *cold* function (and in the DISPATCHERS), each direct call to a function of the module
(`call f`) replaced by an indirect call through a new slot of the function table that holds f
(`i32.const slot; call_indirect (type of f)`), and every custom section (the names) removed.
Calls to imports (the host's functions) and all the calls of the other functions are left as
they were. Nothing else changes: the callee is the same function, with the same signature,
so the module computes exactly what it did; the only costs are the table check of each
rewritten call and ~4 bytes per call site.

Why: Envoy's V8 compiles every function of the module with TurboFan when a VM starts
(`--no-liftoff`), and without Liftoff's call counts it inlines any direct callee that fits a
budget of twice the caller's size (V8's InliningTree::NoLiftoffBudget and the graph builder's
`should_inline`). That inlining is what makes the compilation of jwt-edge expensive in memory:
Node 24 (V8 13.6) compiling the module with every call direct: 2.65 MB of machine code and
783 MB of TurboFan zone allocations in all; with `--no-wasm-inlining`: 1.43 MB and 421 MB.
Envoy offers no way to pass V8 flags, but V8 does not inline an indirect call it has no
feedback for, so the module can decline inlining call by call. Code that runs once per
configuration or per key-set fetch gains nothing from being inlined: that is where the calls
are made indirect. Code on the request path keeps its direct calls (making every call
indirect costs 4 % of a cached request's instructions and 11 % of an RS256 verification's).

Which functions are cold: those whose (demangled) name starts with one of COLD_PATHS (the
configuration compiler, the JWKS and discovery readers, the regex compiler, the root
context's configure/tick callbacks: see each entry), the exports in COLD_EXPORTS, and every
function that no hot function calls directly, e.g. a generic collection method instantiated
only for the configuration's types, or a recursive sort only the configuration uses. Hot are
the other exports and the table's functions (the ways in for the host and for indirect
calls, e.g. trait objects) and what they reach by direct calls. A function these rules miss
stays hot, as before: they can only err toward speed.
"""

from __future__ import annotations

import re
from wasmbin import (CODE, Reader, assemble, bodies, exports, imports, instructions, rewrite_file,
                     sections, sleb, uleb)

# Paths (modules, functions, types) whose functions run only when a configuration is loaded,
# keys are fetched or the root context ticks: never once per request. A function is on a
# path when its name is the path, or goes on from it with `::` (an item inside it) or ` as `
# (a trait method of that type).
COLD_PATHS = (
    "jwt_edge::authn::config",  # reading and compiling the filter configuration
    "jwt_edge::authn::discovery",  # reading an OpenID discovery document
    "jwt_edge::authn::jwk::parse_jwks",  # reading a JWKS (its load_key also reads a DPoP
    # proof's own key, per request: not a seed)
    "regex_lite::hir",  # compiling the configuration's regexes (matching is pikevm: hot)
    "regex_lite::nfa",
    "regex_lite::string::RegexBuilder",
    "serde_json::error",  # building a JSON error: a configuration, JWKS or malformed token
    "jwt_edge::filter::proxy::Root",  # the root context: vm start, configure, tick, fetches
)
# Request-path functions that run each of their parts once (or a few times) per token: their
# own calls are made indirect too, or V8 would copy every part into them (every signature
# algorithm into VerifyKey::verify: a 12 KB function compiled as ~50 KB of code), but they
# and what they call stay hot. Distinct tokens cost the same instructions per request either
# way (`make bench-instructions`, session 10's module / this one: RS256 998.6K / 998.9K,
# ES256 727.7K / 725.2K, PS256 1045.2K / 1045.3K, ES384 1815.3K / 1812.9K, EdDSA 1758.5K /
# 1758.3K); the calls left in its loops are a PSS mask's hashing, SHA-512's blocks for EdDSA
# and a constant-time comparison's bytes.
DISPATCHERS = ("jwt_edge::crypto::verify::VerifyKey::verify",)
# Exports the host calls only when a VM starts or (re)configures, or on a timer.
COLD_EXPORTS = ("_initialize", "proxy_on_vm_start", "proxy_on_configure", "proxy_on_tick")
FUNCREF = 0x70


def demangle(symbol: str) -> str:
    """A Rust legacy-mangled symbol (`_ZN...E`) as its path, without the hash; any other
    name as it is."""
    m = re.fullmatch(r"_ZN(.*)E(\.[0-9A-Za-z_.]+)?", symbol)  # LLVM may add `.1`
    if not m:
        return symbol
    parts, rest = [], m.group(1)
    while rest:
        n = re.match(r"\d+", rest)
        if not n:
            return symbol
        size = int(n.group())
        parts.append(rest[n.end():n.end() + size])
        rest = rest[n.end() + size:]
    if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()
    path = "::".join(p[1:] if p.startswith("_$") else p for p in parts)
    escapes = {"LT": "<", "GT": ">", "RF": "&", "BP": "*", "C": ",", "SP": "@", "LP": "(", "RP": ")"}
    path = re.sub(r"\$(LT|GT|RF|BP|C|SP|LP|RP|u[0-9a-f]+)\$",
                  lambda e: escapes.get(e.group(1)) or chr(int(e.group(1)[1:], 16)), path)
    return path.replace("..", "::") + (m.group(2) or "")


class Module:
    def __init__(self, data: bytes) -> None:
        self.sections = sections(data)
        self.func_types: list[int] = []  # every function's type index, imports first
        self.imported = 0
        self.exports: dict[str, int] = {}
        self.in_table: set[int] = set()
        self.names: dict[int, str] = {}
        self.table_limits: tuple[int, int] | None = None  # limits flags, min
        for s in self.sections:
            r = Reader(data, s.body, s.end)
            if s.id == 2:
                for entry in imports(data, s):
                    if entry.kind == 1:
                        raise ValueError("an imported table: this tool adds slots only to its own")
                    if entry.type_index is not None:
                        self.func_types.append(entry.type_index)
                        self.imported += 1
            elif s.id == 3:
                self.func_types += [r.uleb() for _ in range(r.uleb())]
            elif s.id == 4:
                self._table(r)
            elif s.id == 7:
                self.exports.update((name, index) for name, kind, index in exports(data, s)
                                    if kind == 0)
            elif s.id == 9:
                self._elements(r)
            elif s.id == 0 and r.name() == "name":
                self._names(r, s.end)
        code = [s for s in self.sections if s.id == CODE]
        if len(code) != 1:
            raise ValueError("expected one code section")
        self.code = code[0]
        self.bodies = bodies(data, self.code)
        if len(self.bodies) + self.imported != len(self.func_types):
            raise ValueError("the function and code sections disagree")
        # (start, end, callee) of each `call` in each body, decoded once.
        self.calls = [[(ins.at, ins.end, Reader(data, ins.at + 1).uleb())
                       for ins in instructions(data, b) if ins.op == 0x10] for b in self.bodies]

    def _table(self, r: Reader) -> None:
        tables = r.uleb()
        if tables != 1:
            raise ValueError(f"expected one table (rustc's), found {tables}")
        if r.byte() != FUNCREF:
            raise ValueError("the table is not a funcref table")
        flags = r.byte()
        if flags not in (0, 1):
            raise ValueError(f"unsupported table limits flags {flags}")
        self.table_limits = (flags, r.uleb())  # a max, if any, becomes the new min

    def _elements(self, r: Reader) -> None:
        for _ in range(r.uleb()):
            flags = r.uleb()
            if flags != 0:  # rustc writes active segments of table 0 with function indices
                raise ValueError(f"unsupported element segment kind {flags}")
            if r.byte() != 0x41:
                raise ValueError("an element segment offset that is not i32.const")
            r.sleb()
            if r.byte() != 0x0B:
                raise ValueError("an element segment offset that is not i32.const")
            self.in_table.update(r.uleb() for _ in range(r.uleb()))

    def _names(self, r: Reader, end: int) -> None:
        while r.pos < end:
            sub = r.byte()
            size = r.uleb()
            sub_end = r.pos + size
            if sub == 1:  # function names
                for _ in range(r.uleb()):
                    index = r.uleb()
                    self.names[index] = demangle(r.name())
            r.pos = sub_end

    def direct_calls(self, index: int) -> list[tuple[int, int, int]]:
        """(start, end, callee) of each `call` in function `index`'s body."""
        return self.calls[index - self.imported]


def on_path(name: str, paths: tuple[str, ...]) -> bool:
    name = name.lstrip("<")
    return any(name == p or name.startswith((p + "::", p + " as ")) for p in paths)


def cold_functions(m: Module) -> set[int]:
    """The seeds (by name and export), and every function no hot function calls directly:
    hot are the exports and table entries that are not seeds (the host's and the indirect
    calls' ways in) and what they reach by direct calls without passing through a seed."""
    defined = range(m.imported, len(m.func_types))
    seeds = {i for i in defined if on_path(m.names.get(i, ""), COLD_PATHS)}
    seeds |= {m.exports[e] for e in COLD_EXPORTS if m.exports.get(e, -1) >= m.imported}
    roots = (set(m.exports.values()) | m.in_table) - seeds
    hot: set[int] = set()
    stack = [i for i in roots if i >= m.imported]
    while stack:
        i = stack.pop()
        if i in hot:
            continue
        hot.add(i)
        stack += [c for _, _, c in m.direct_calls(i)
                  if c >= m.imported and c not in hot and c not in seeds]
    return set(defined) - hot


def rewrite(data: bytes) -> tuple[bytes, dict[str, int]]:
    m = Module(data)
    if not m.names:
        raise ValueError("the module has no function names: build it with its names section")
    if m.table_limits is None:
        raise ValueError("the module has no function table")
    flags, low = m.table_limits
    cold = cold_functions(m)
    dispatchers = {i for i, name in m.names.items() if on_path(name, DISPATCHERS)} - cold
    slots: dict[int, int] = {}
    new_bodies = []
    calls = 0
    for n, body in enumerate(m.bodies):
        index = m.imported + n
        raw = data[body.start:body.end]
        if index in cold or index in dispatchers:
            out = bytearray()
            pos = Reader(data, body.start)
            pos.uleb()  # the body's size, written again below
            copied = pos.pos
            for start, end, callee in m.direct_calls(index):
                if callee < m.imported:
                    continue
                slot = slots.setdefault(callee, low + len(slots))
                out += data[copied:start]
                out += b"\x41" + sleb(slot) + b"\x11" + uleb(m.func_types[callee]) + b"\x00"
                copied = end
                calls += 1
            out += data[copied:body.end]
            raw = uleb(len(out)) + bytes(out)
        new_bodies.append(raw)
    grown = low + len(slots)
    table = uleb(1) + bytes([FUNCREF, flags]) + uleb(grown) + (uleb(grown) if flags & 1 else b"")
    segment = uleb(0) + b"\x41" + sleb(low) + b"\x0b" + uleb(len(slots))
    segment += b"".join(uleb(f) for f in sorted(slots, key=slots.get))
    payloads: dict[int, bytes] = {}
    for s in m.sections:
        if s.id == 0:
            continue  # names and any other custom section: not shipped
        payload = data[s.body:s.end]
        if s.id == 4:
            payload = table
        elif s.id == 9 and slots:
            r = Reader(data, s.body)
            count = r.uleb()
            payload = uleb(count + 1) + data[r.pos:s.end] + segment
        elif s.id == CODE:
            payload = uleb(len(new_bodies)) + b"".join(new_bodies)
        if s.id in payloads:
            raise ValueError(f"section {s.id} appears twice")
        payloads[s.id] = payload
    if slots and 9 not in payloads:
        payloads[9] = uleb(1) + segment
    out = assemble(payloads)
    cold_bytes = sum(b.end - b.start for n, b in enumerate(m.bodies) if m.imported + n in cold)
    return out, {"functions": len(m.bodies), "cold": len(cold), "cold_bytes": cold_bytes,
                        "dispatchers": len(dispatchers), "calls": calls, "slots": len(slots)}


def main() -> None:
    rewrite_file("indirect_calls.py", rewrite, lambda stats: (
        f"{stats['cold']} of {stats['functions']} functions cold ({stats['cold_bytes']} bytes) "
        f"and {stats['dispatchers']} dispatchers: {stats['calls']} calls made indirect through "
        f"{stats['slots']} new table slots"))


if __name__ == "__main__":
    main()
