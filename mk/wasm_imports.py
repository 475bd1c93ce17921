#!/usr/bin/env python3
"""Checks a built module's imports against the host-function tables of the hosts jwt-edge
claims (mk/host-abi/*.tsv): every imported function must exist in every table with the same
signature. A host instantiates a module only if it provides each import with the same type
(ngx_wasm_module refused the whole module over one: `proxy_get_log_level`), so an import
outside a table fails `make build`.

Usage: wasm_imports.py MODULE.wasm TABLE.tsv [TABLE.tsv ...]
       wasm_imports.py --list MODULE.wasm

A table line is `module<TAB>name<TAB>params<TAB>results` (types comma-separated, `-` for
none); `#` starts a comment. Standard library only (and mk/wasmbin.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import wasmbin
from wasmbin import Reader, sections

VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128"}


class WasmError(ValueError):
    pass


def valtypes(r: Reader) -> tuple[str, ...]:
    out = []
    for _ in range(r.uleb()):
        b = r.byte()
        if b not in VALTYPES:
            raise WasmError(f"value type 0x{b:02x}")
        out.append(VALTYPES[b])
    return tuple(out)


def imports(data: bytes) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """The module's imported functions: (module, name, params, results)."""
    types: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    found = []
    for section in sections(data):
        body = Reader(data, section.body, section.end)
        if section.id == 1:
            for _ in range(body.uleb()):
                if body.byte() != 0x60:
                    raise WasmError("type section entry is not a function type")
                types.append((valtypes(body), valtypes(body)))
        elif section.id == 2:
            for entry in wasmbin.imports(data, section):
                if entry.type_index is None:
                    continue
                if entry.type_index >= len(types):
                    raise WasmError(f"{entry.module}.{entry.name}: type index "
                                    f"{entry.type_index} out of range")
                found.append((entry.module, entry.name, *types[entry.type_index]))
    return found


def parse_types(text: str) -> tuple[str, ...]:
    return () if text == "-" else tuple(t.strip() for t in text.split(","))


def load_table(path: Path) -> dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]]:
    table = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise SystemExit(f"{path}:{n}: want 4 tab-separated fields, got {len(fields)}")
        module, name, params, results = fields
        table[(module, name)] = (parse_types(params), parse_types(results))
    return table


def show(params, results) -> str:
    return f"({', '.join(params)}) -> ({', '.join(results)})"


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--list":
        for module, name, params, results in imports(Path(argv[1]).read_bytes()):
            print(f"{module}\t{name}\t{','.join(params) or '-'}\t{','.join(results) or '-'}")
        return 0
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    module_path, tables = Path(argv[0]), [Path(t) for t in argv[1:]]
    found = imports(module_path.read_bytes())
    problems = []
    for table_path in tables:
        table = load_table(table_path)
        for module, name, params, results in found:
            want = table.get((module, name))
            if want is None:
                problems.append(f"{table_path.name}: {module}.{name} {show(params, results)} "
                                f"is not a host function there")
            elif want != (params, results):
                problems.append(f"{table_path.name}: {module}.{name} is imported as "
                                f"{show(params, results)}, the host declares {show(*want)}")
    if problems:
        print(f"{module_path}: imports the hosts do not provide:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"{module_path}: {len(found)} imports, each provided with its signature by "
          + ", ".join(t.stem for t in tables))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
