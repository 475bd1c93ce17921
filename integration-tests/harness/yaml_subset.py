"""A strict reader for the YAML the deploy/ manifests are written in (no PyYAML in .venv).

It reads block mappings and sequences (including `- key: value` items and a sequence at the
same indentation as its key), plain, single- and double-quoted scalars, one-line flow
collections (`[a, b]`, `{a: b}`, JSON), literal block scalars (`|`, `|-`), comments and `---`
document separators. Everything else raises YamlError rather than being read some other way:
tabs, anchors, aliases, tags, directives, multi-line flow collections or quoted scalars, folded
scalars, duplicate keys, and plain scalars that YAML 1.1 and 1.2 readers type differently
(yes/no/on/off, 0644, 1e3, dates, 1:30). What it accepts, PyYAML reads the same way.
"""

from __future__ import annotations

import json
import re

__all__ = ["YamlError", "load_all"]


class YamlError(ValueError):
    pass


_NULL = {"", "~", "null", "Null", "NULL"}
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_AMBIGUOUS = {"y", "Y", "n", "N", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON",
              "off", "Off", "OFF", "=", "<<"}
_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)")
_SUSPECT = (
    re.compile(r"[-+]?0[0-9_]+"),                        # octal in YAML 1.1
    re.compile(r"[-+]?0[xXoObB][0-9a-fA-F_]+"),          # hex / octal / binary
    re.compile(r"[-+]?[0-9._]*[0-9][0-9._]*[eE][-+]?[0-9]+"),  # exponents: 1.1 and 1.2 differ
    re.compile(r"[-+]?[0-9]+(_[0-9]+)+"),                # 1_000
    re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?"),  # sexagesimal in 1.1
    re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?"),      # timestamps
    re.compile(r"[-+]?\.(inf|Inf|INF|nan|NaN|NAN)"),
)
_FLOW_INDICATORS = ",[]{}"


def _plain(text: str, lineno: int):
    """Types a plain scalar (YAML 1.2 core schema), refusing 1.1/1.2 ambiguities."""
    if text in _NULL:
        return None
    if text in _BOOL:
        return _BOOL[text]
    if text in _AMBIGUOUS or any(p.fullmatch(text) for p in _SUSPECT):
        raise YamlError(f"line {lineno}: plain scalar {text!r} is read differently by YAML "
                        "readers: quote it")
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text[0] in "&*!%@`|>":
        raise YamlError(f"line {lineno}: unsupported construct {text!r}")
    return text


def _double_quoted(body: str, lineno: int) -> str:
    # JSON's escapes are a subset of YAML's; the others are refused.
    try:
        return json.loads('"' + body + '"')
    except ValueError:
        raise YamlError(f"line {lineno}: unsupported escape in \"{body}\"") from None


def _scan_quoted(s: str, i: int, lineno: int) -> tuple[str, int]:
    """The quoted scalar starting at s[i]; returns (value, index after it)."""
    q = s[i]
    j = i + 1
    while j < len(s):
        c = s[j]
        if q == "'" and c == "'":
            if j + 1 < len(s) and s[j + 1] == "'":
                j += 2
                continue
            return s[i + 1:j].replace("''", "'"), j + 1
        if q == '"' and c == "\\":
            j += 2
            continue
        if q == '"' and c == '"':
            return _double_quoted(s[i + 1:j], lineno), j + 1
        j += 1
    raise YamlError(f"line {lineno}: unterminated or multi-line quoted scalar")


def _strip_comment(s: str, lineno: int) -> str:
    """The line without its comment (a # at the start or after whitespace, outside quotes)."""
    i = 0
    token_start = True
    while i < len(s):
        c = s[i]
        if c in "'\"" and token_start:
            _, i = _scan_quoted(s, i, lineno)
            token_start = False
            continue
        if c == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
        token_start = c in " -:[{,?"
        i += 1
    return s.rstrip()


class _Flow:
    """A one-line flow collection or scalar."""

    def __init__(self, text: str, lineno: int):
        self.s, self.i, self.lineno = text, 0, lineno

    def error(self, what: str) -> YamlError:
        return YamlError(f"line {self.lineno}: {what} in flow {self.s!r}")

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] == " ":
            self.i += 1

    def value(self, key: bool = False):
        self.ws()
        if self.i >= len(self.s):
            raise self.error("missing value")
        c = self.s[self.i]
        if c == "[":
            return self.seq()
        if c == "{":
            return self.map()
        if c in "'\"":
            v, self.i = _scan_quoted(self.s, self.i, self.lineno)
            return v
        start = self.i
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in _FLOW_INDICATORS:
                break
            if c == ":" and (self.i + 1 == len(self.s) or self.s[self.i + 1] in " ,]}"):
                break
            self.i += 1
        text = self.s[start:self.i].strip()
        if not text and not key:
            raise self.error("empty value")
        return _plain(text, self.lineno)

    def seq(self) -> list:
        self.i += 1
        out = []
        self.ws()
        if self.s.startswith("]", self.i):
            self.i += 1
            return out
        while True:
            out.append(self.value())
            self.ws()
            if self.s.startswith(",", self.i):
                self.i += 1
                continue
            if self.s.startswith("]", self.i):
                self.i += 1
                return out
            raise self.error("expected , or ]")

    def map(self) -> dict:
        self.i += 1
        out: dict = {}
        self.ws()
        if self.s.startswith("}", self.i):
            self.i += 1
            return out
        while True:
            k = self.value(key=True)
            self.ws()
            if not self.s.startswith(":", self.i):
                raise self.error("expected :")
            self.i += 1
            if k in out:
                raise self.error(f"duplicate key {k!r}")
            out[k] = self.value()
            self.ws()
            if self.s.startswith(",", self.i):
                self.i += 1
                continue
            if self.s.startswith("}", self.i):
                self.i += 1
                return out
            raise self.error("expected , or }")

    def whole(self):
        v = self.value()
        self.ws()
        if self.i != len(self.s):
            raise self.error("trailing text")
        return v


def _split_key(text: str, lineno: int):
    """(key, rest) if `text` is a block mapping entry, else None."""
    if text.startswith(("- ", "[", "{")) or text == "-":
        return None
    if text[0] in "'\"":
        key, end = _scan_quoted(text, 0, lineno)
        rest = text[end:]
        if rest == ":" or rest.startswith(": "):
            return key, rest[1:].strip()
        return None
    if text[0] in "?&*!|>%@`":
        raise YamlError(f"line {lineno}: unsupported construct {text!r}")
    m = re.search(r":( |$)", text)
    if not m:
        return None
    key = _plain(text[:m.start()].rstrip(), lineno)
    return key, text[m.end():].strip()


class _Block:
    def __init__(self, raw_lines: list[tuple[int, str]]):
        # [lineno, indent, text-without-comment, raw]
        self.lines = []
        for no, raw in raw_lines:
            if "\t" in raw[: len(raw) - len(raw.lstrip())]:
                raise YamlError(f"line {no}: tab in indentation")
            self.lines.append([no, len(raw) - len(raw.lstrip(" ")), None, raw])
        self.i = 0

    def peek(self):
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line[2] is None:
                line[2] = _strip_comment(line[3].strip(), line[0])
            if line[2]:
                return line
            self.i += 1
        return None

    def node(self, indent: int):
        line = self.peek()
        no, ind, text, _ = line
        if text == "-" or text.startswith("- "):
            return self.seq(ind)
        if _split_key(text, no) is not None:
            return self.map(ind)
        self.i += 1
        return self.inline(text, no, ind)

    def inline(self, text: str, no: int, indent: int):
        if text in ("|", "|-"):
            return self.literal(indent, text, no)
        if text[0] in ">":
            raise YamlError(f"line {no}: folded scalars are not supported")
        if text[0] in "[{'\"":
            return _Flow(text, no).whole()
        # A plain scalar in block context may contain flow indicators (a,b) and ':' not
        # followed by a space.
        return _plain(text, no)

    def literal(self, parent_indent: int, indicator: str, no: int) -> str:
        body = []
        block_indent = None
        while self.i < len(self.lines):
            lno, ind, _, raw = self.lines[self.i]
            if raw.strip() and ind <= parent_indent:
                break
            if raw.strip():
                if block_indent is None:
                    block_indent = ind
                elif ind < block_indent:
                    raise YamlError(f"line {lno}: less indented than its block scalar")
            body.append(raw)
            self.i += 1
        if block_indent is None:
            raise YamlError(f"line {no}: empty block scalar")
        text = "\n".join(r[block_indent:] if r.strip() else "" for r in body).rstrip("\n")
        return text if indicator == "|-" else text + "\n"

    def value_after(self, rest: str, no: int, indent: int, seq_ok: bool):
        """The value of a `key:` / `-` whose inline remainder is `rest`."""
        if rest:
            return self.inline(rest, no, indent)
        nxt = self.peek()
        if nxt is not None and nxt[1] > indent:
            return self.node(nxt[1])
        if seq_ok and nxt is not None and nxt[1] == indent and (
                nxt[2] == "-" or nxt[2].startswith("- ")):
            return self.seq(indent)
        return None

    def seq(self, indent: int) -> list:
        out = []
        while True:
            line = self.peek()
            if line is None or line[1] < indent:
                return out
            no, ind, text, _ = line
            if ind > indent:
                raise YamlError(f"line {no}: unexpected indentation")
            if not (text == "-" or text.startswith("- ")):
                return out
            rest = text[1:].lstrip(" ")
            if rest and (rest == "-" or rest.startswith("- ") or _split_key(rest, no)):
                # A compact nested node: read the rest of the line as if it started there.
                line[1] = indent + len(text) - len(rest)
                line[2] = rest
                out.append(self.node(line[1]))
                continue
            self.i += 1
            out.append(self.value_after(rest, no, indent, seq_ok=False))

    def map(self, indent: int) -> dict:
        out: dict = {}
        while True:
            line = self.peek()
            if line is None or line[1] < indent:
                return out
            no, ind, text, _ = line
            if ind > indent:
                raise YamlError(f"line {no}: unexpected indentation")
            kv = _split_key(text, no)
            if kv is None:
                raise YamlError(f"line {no}: expected `key: value`, got {text!r}")
            key, rest = kv
            if key in out:
                raise YamlError(f"line {no}: duplicate key {key!r}")
            self.i += 1
            out[key] = self.value_after(rest, no, indent, seq_ok=True)


def load_all(text: str) -> list:
    """Every document in `text` (empty documents are left out)."""
    docs, current = [], []
    for no, raw in enumerate(text.splitlines(), 1):
        if re.fullmatch(r"---\s*(#.*)?", raw):
            docs.append(current)
            current = []
        elif raw.startswith(("%", "...")):
            raise YamlError(f"line {no}: directives and document end markers are not supported")
        else:
            current.append((no, raw))
    docs.append(current)
    out = []
    for lines in docs:
        block = _Block(lines)
        first = block.peek()
        if first is None:
            continue
        if first[1] != 0:
            raise YamlError(f"line {first[0]}: a document must start at column 0")
        out.append(block.node(0))
        rest = block.peek()
        if rest is not None:
            raise YamlError(f"line {rest[0]}: unexpected text {rest[2]!r}")
    return out
