"""mk/indirect_calls.py, the build step that makes the cold code's calls indirect so that V8
does not inline into it (issue #13): on a small module built here, the cold functions (by
name, then those only cold functions call) get `call_indirect` through new table slots, every
other function and every call to an import stays as it was, the names go, and the module
computes the same results in Node's V8 as before; malformed input is refused with a message.
The shipped module is checked too: no names left, and its extra table slots in place."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "mk"))
import wasmbin  # noqa: E402
from wasmbin import sleb, uleb  # noqa: E402

TOOL = REPO / "mk" / "indirect_calls.py"
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "jwt_edge.wasm"

I32 = 0x7F
# Function indices: 0 is the import env.plus1000.
COLD, HOT, HELPER, COLD_ONLY, LEAF, IN_TABLE, DISPATCH = 1, 2, 3, 4, 5, 6, 7
NAMES = {
    COLD: "_ZN8jwt_edge5authn6config7compile3run17h0123456789abcdefE",
    HOT: "_ZN8jwt_edge5authn12authenticate6decide17h0123456789abcdefE",
    HELPER: "helper",
    COLD_ONLY: "cold_only",
    LEAF: "leaf",
    IN_TABLE: "in_table",
    DISPATCH: "_ZN8jwt_edge6crypto6verify9VerifyKey6verify17h0123456789abcdefE",
}


def name(s: str) -> bytes:
    return uleb(len(s)) + s.encode()


def section(sid: int, body: bytes) -> bytes:
    return bytes([sid]) + uleb(len(body)) + body


def vec(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def call(f: int) -> bytes:
    return b"\x10" + uleb(f)


def const(n: int) -> bytes:
    return b"\x41" + sleb(n)


def body(code: bytes) -> bytes:
    code = b"\x00" + code + b"\x0b"  # no locals; end
    return uleb(len(code)) + code


def module(*, names: bool = True, tables: int = 1) -> bytes:
    """cold() = plus1000(in_table(cold_only(helper(5)))); hot() = helper(7);
    verify() = helper(3); helper(x) = 2x; cold_only(x) = leaf(x) + 3; in_table(x) = 100x;
    leaf(x) = x < 0 ? leaf(x) : x + 10 (a call to itself that never runs)."""
    get = b"\x20\x00"
    types = vec([b"\x60\x00\x01\x7f", b"\x60\x01\x7f\x01\x7f"])  # () -> i32, (i32) -> i32
    imports = vec([name("env") + name("plus1000") + b"\x00" + uleb(1)])
    funcs = vec([uleb(t) for t in (0, 0, 1, 1, 1, 1, 0)])
    table = vec([b"\x70\x01" + uleb(2) + uleb(2)] * tables)  # funcref, min = max = 2
    exports = vec([name("cold") + b"\x00" + uleb(COLD), name("hot") + b"\x00" + uleb(HOT),
                   name("verify") + b"\x00" + uleb(DISPATCH)])
    elements = vec([uleb(0) + const(1) + b"\x0b" + vec([uleb(IN_TABLE)])])
    code = vec([
        body(const(5) + call(HELPER) + call(COLD_ONLY) + call(IN_TABLE) + call(0)),
        body(const(7) + call(HELPER)),
        body(get + const(2) + b"\x6c"),  # i32.mul
        body(get + call(LEAF) + const(3) + b"\x6a"),  # i32.add
        body(get + const(0) + b"\x48\x04\x7f" + get + call(LEAF)  # i32.lt_s; if (result i32)
             + b"\x05" + get + const(10) + b"\x6a\x0b"),  # else; i32.add; end
        body(get + const(100) + b"\x6c"),
        body(const(3) + call(HELPER)),
    ])
    out = b"\0asm\x01\0\0\0" + section(1, types) + section(2, imports) + section(3, funcs)
    out += section(4, table) + section(7, exports) + section(9, elements) + section(10, code)
    if names:
        entries = vec([uleb(i) + name(n) for i, n in sorted(NAMES.items())])
        out += section(0, name("name") + b"\x01" + uleb(len(entries)) + entries)
    return out


def run_tool(tmp_path: Path, data: bytes) -> tuple[subprocess.CompletedProcess, Path]:
    src, dst = tmp_path / "in.wasm", tmp_path / "out.wasm"
    src.write_bytes(data)
    return subprocess.run([sys.executable, str(TOOL), str(src), str(dst)],
                          capture_output=True, text=True, timeout=120), dst


def node_results(path: Path) -> dict:
    node = shutil.which("node")
    assert node, "node is needed (as for make unit-wasm)"
    script = ("const fs=require('fs');"
              f"const m=new WebAssembly.Module(fs.readFileSync({json.dumps(str(path))}));"
              "const i=new WebAssembly.Instance(m,{env:{plus1000:x=>x+1000}});"
              "console.log(JSON.stringify({cold:i.exports.cold(),hot:i.exports.hot(),"
              "verify:i.exports.verify()}));")
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def calls_in(data: bytes) -> list[list[tuple[str, int]]]:
    """Per function body: ("call", callee) and ("call_indirect", the i32.const before it)."""
    sections = wasmbin.sections(data)
    code = next(s for s in sections if s.id == wasmbin.CODE)
    out = []
    for b in wasmbin.bodies(data, code):
        calls, last_const = [], None
        for ins in wasmbin.instructions(data, b):
            if ins.op == 0x41:
                last_const = wasmbin.Reader(data, ins.at + 1).sleb()
            elif ins.op == 0x10:
                calls.append(("call", wasmbin.Reader(data, ins.at + 1).uleb()))
            elif ins.op == 0x11:
                calls.append(("call_indirect", last_const))
        out.append(calls)
    return out


def test_cold_calls_become_indirect_and_results_stay(tmp_path):
    original = module()
    result, out = run_tool(tmp_path, original)
    assert result.returncode == 0, result.stderr
    assert "3 of 7 functions cold (44 bytes) and 1 dispatchers" in result.stdout
    assert "6 calls made indirect through 4 new table slots" in result.stdout
    data = out.read_bytes()
    # The cold seed: each call to a defined function goes through a new slot (2, 3, 4), the
    # import stays a direct call; cold_only and leaf (called only from cold code and, for
    # leaf, itself) are cold too: both calls to leaf go through slot 5; hot (exported), helper
    # (called by hot) and in_table (in the table) stay hot, their code as it was.
    calls = calls_in(data)
    assert calls[COLD - 1] == [("call_indirect", 2), ("call_indirect", 3),
                               ("call_indirect", 4), ("call", 0)]
    assert calls[COLD_ONLY - 1] == [("call_indirect", 5)]
    assert calls[LEAF - 1] == [("call_indirect", 5)]
    assert calls[HOT - 1] == [("call", HELPER)]
    # The dispatcher's call goes through helper's slot; helper itself stays hot.
    assert calls[DISPATCH - 1] == [("call_indirect", 2)]
    assert calls_in(original)[HOT - 1] == calls[HOT - 1]
    for f in (HELPER, IN_TABLE):
        assert calls[f - 1] == []
    sections = {s.id: s for s in wasmbin.sections(data)}
    assert 0 not in sections  # the names are gone
    table = wasmbin.Reader(data, sections[4].body)
    assert (table.uleb(), table.byte(), table.byte(), table.uleb(), table.uleb()) == (1, 0x70, 1, 6, 6)
    elements = wasmbin.Reader(data, sections[9].body)
    assert elements.uleb() == 2
    assert node_results(out) == node_results(tmp_path / "in.wasm") == {"cold": 3300, "hot": 14, "verify": 6}


def test_refuses_modules_it_cannot_rewrite(tmp_path):
    result, out = run_tool(tmp_path, module(names=False))
    assert result.returncode == 1
    assert "has no function names" in result.stderr
    assert not out.exists()
    result, _ = run_tool(tmp_path, module(tables=2))
    assert result.returncode == 1
    assert "expected one table (rustc's), found 2" in result.stderr
    result, _ = run_tool(tmp_path, module()[:-7])
    assert result.returncode == 1
    assert "indirect_calls.py" in result.stderr


def test_shipped_module_is_rewritten():
    assert WASM.exists(), "`make integration` builds the module first"
    data = WASM.read_bytes()
    sections = {s.id: s for s in wasmbin.sections(data)}
    assert 0 not in sections, "the shipped module keeps no custom section (names)"
    elements = wasmbin.Reader(data, sections[9].body)
    assert elements.uleb() == 2, "rustc's element segment and indirect_calls.py's"
