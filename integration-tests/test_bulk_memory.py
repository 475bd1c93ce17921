"""mk/bulk_memory.py, the build step that keeps small `memory.copy` / `memory.fill` in the
module's own code instead of V8's C call (issue #13): on a small module built here, every
copy and fill of every length from 0 to past the small limit, at every alignment, with the
ranges apart, touching and overlapping in both directions, leaves memory exactly as the
instruction does in Node's V8 (the module before the rewrite is the reference); the rewrite
patches each instruction in place; malformed input is refused with a message. The shipped
module is checked too: no `memory.copy` or `memory.fill` left outside the two functions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "mk"))
import bulk_memory  # noqa: E402
import wasmbin  # noqa: E402
from wasmbin import uleb  # noqa: E402

TOOL = REPO / "mk" / "bulk_memory.py"
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "jwt_edge.wasm"
SMALL = 64  # the limit the small module's rewrite uses (the shipped one: bulk_memory.SMALL)


def section(sid: int, body: bytes) -> bytes:
    return bytes([sid]) + uleb(len(body)) + body


def vec(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def name(s: str) -> bytes:
    return uleb(len(s)) + s.encode()


def module(*, custom: bool = False) -> bytes:
    """Exports `copy(d, s, n)` = memory.copy, `fill(d, v, n)` = memory.fill, `both(d, s, n)`
    = a copy then a fill of the same length with 0x5a (two instructions in one body), and
    one page of memory."""
    types = vec([b"\x60\x03\x7f\x7f\x7f\x00"])
    funcs = vec([uleb(0)] * 3)
    memory = vec([b"\x00\x01"])
    exports = vec([name("copy") + b"\x00\x00", name("fill") + b"\x00\x01",
                   name("both") + b"\x00\x02", name("memory") + b"\x02\x00"])
    get = [b"\x20\x00", b"\x20\x01", b"\x20\x02"]
    bodies = [
        get[0] + get[1] + get[2] + b"\xfc\x0a\x00\x00",
        get[0] + get[1] + get[2] + b"\xfc\x0b\x00",
        get[0] + get[1] + get[2] + b"\xfc\x0a\x00\x00"
        + get[0] + b"\x41\xda\x00" + get[2] + b"\xfc\x0b\x00",
    ]
    code = vec([uleb(len(b) + 2) + b"\x00" + b + b"\x0b" for b in bodies])
    out = b"\0asm\x01\0\0\0" + section(1, types) + section(3, funcs) + section(5, memory)
    out += section(7, exports) + section(10, code)
    if custom:
        out += section(0, name("name") + b"\x00")
    return out


def results(path: Path, cases: list[list[int]]) -> list[str]:
    """For each case [op, d, s_or_v, n]: memory's first 512 bytes after the op, starting from
    the same pattern each time, as hex."""
    node = shutil.which("node")
    assert node, "node is needed (as for make unit-wasm)"
    script = (
        "const fs=require('fs');"
        f"const m=new WebAssembly.Module(fs.readFileSync({json.dumps(str(path))}));"
        "const i=new WebAssembly.Instance(m,{});"
        "const mem=new Uint8Array(i.exports.memory.buffer);"
        f"const cases={json.dumps(cases)};const out=[];"
        "for(const [op,d,s,n] of cases){"
        " for(let k=0;k<512;k++) mem[k]=(k*7+3)&255;"
        " i.exports[op===0?'copy':op===1?'fill':'both'](d,s,n);"
        " out.push(Buffer.from(mem.subarray(0,512)).toString('hex'));}"
        "console.log(JSON.stringify(out));"
    )
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def cases() -> list[list[int]]:
    out = []
    for n in list(range(0, 40)) + [47, 48, 49, 63, SMALL, SMALL + 1, 100, 200]:
        for d, s in ((0, 256), (3, 250), (256, 1), (100, 100 + n), (100 + n, 100),
                     (100, 101), (101, 100), (100, 117), (117, 100), (50, 50)):
            out.append([0, d, s, n])
        for d in (0, 5, 250):
            out.append([1, d, 0xA7, n])
        out.append([2, 7, 300, n])
    return out


def rewrite(tmp_path: Path, data: bytes, small: int = SMALL) -> Path:
    out, stats = bulk_memory.rewrite(data, small)
    assert stats == {"copy": 2, "fill": 2, "copy_index": 3}
    path = tmp_path / "out.wasm"
    path.write_bytes(out)
    return path


def test_copies_and_fills_as_the_instructions_do(tmp_path):
    original = tmp_path / "in.wasm"
    original.write_bytes(module())
    rewritten = rewrite(tmp_path, module())
    every = cases()
    before, after = results(original, every), results(rewritten, every)
    for case, want, got in zip(every, before, after):
        assert got == want, f"case {case}"
    # Not vacuous: the cases change memory, and differently.
    assert len(set(before)) > len(every) // 2


def test_each_instruction_is_patched_in_place(tmp_path):
    data = module()
    out = rewrite(tmp_path, data).read_bytes()
    code = next(s for s in wasmbin.sections(out) if s.id == wasmbin.CODE)
    ops = []
    for body in wasmbin.bodies(out, code)[:3]:
        ops.append([("call", wasmbin.Reader(out, ins.at + 1).uleb()) if ins.op == 0x10
                    else ("nop" if ins.op == 0x01 else "bulk", ins.sub)
                    for ins in wasmbin.instructions(out, body) if ins.op in (0x10, 0x01, 0xFC)])
    # Here `call` takes 2 bytes: copy (4 bytes) is call 3 + two nops, fill (3) call 4 + nop.
    nop = ("nop", None)
    assert ops == [[("call", 3), nop, nop], [("call", 4), nop], [("call", 3), nop, nop, ("call", 4), nop]]
    # The appended functions keep the instructions for what they hand to V8.
    tail = [[(ins.op, ins.sub) for ins in wasmbin.instructions(out, body) if ins.op == 0xFC]
            for body in wasmbin.bodies(out, code)[3:]]
    assert tail == [[(0xFC, 10)], [(0xFC, 11)]]
    # Bodies of the original functions keep their sizes.
    before = next(s for s in wasmbin.sections(data) if s.id == wasmbin.CODE)
    assert [b.end - b.start for b in wasmbin.bodies(data, before)] == \
        [b.end - b.start for b in wasmbin.bodies(out, code)[:3]]


def test_refuses_modules_it_cannot_rewrite(tmp_path):
    def run(data: bytes) -> subprocess.CompletedProcess:
        src, dst = tmp_path / "bad.wasm", tmp_path / "bad.out.wasm"
        src.write_bytes(data)
        dst.unlink(missing_ok=True)
        result = subprocess.run([sys.executable, str(TOOL), str(src), str(dst)],
                                capture_output=True, text=True, timeout=60)
        assert not dst.exists()
        return result

    result = run(module(custom=True))
    assert result.returncode == 1
    assert "a custom section: run this after the names are removed" in result.stderr
    result = run(module()[:-5])
    assert result.returncode == 1 and "bulk_memory.py" in result.stderr
    result = run(b"not wasm")
    assert result.returncode == 1 and "not a wasm module" in result.stderr
    # A memory.copy between two memories (multi-memory) is not the one-memory encoding.
    result = run(module().replace(b"\xfc\x0a\x00\x00", b"\xfc\x0a\x01\x00", 1))
    assert result.returncode == 1 and "unexpected encoding fc0a0100" in result.stderr


def test_shipped_module_is_rewritten():
    assert WASM.exists(), "`make integration` builds the module first"
    data = WASM.read_bytes()
    code = next(s for s in wasmbin.sections(data) if s.id == wasmbin.CODE)
    found = [[ins.sub for ins in wasmbin.instructions(data, b) if ins.op == 0xFC and ins.sub in (10, 11)]
             for b in wasmbin.bodies(data, code)]
    assert found[-2:] == [[10], [11]], "the last two functions are bulk_memory.py's"
    assert not any(found[:-2]), "no memory.copy or memory.fill outside them"
