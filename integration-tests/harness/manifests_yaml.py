"""Reads the deploy/ manifests with PyYAML (pinned in the Makefile), plus the checks that keep
them unambiguous for every reader that applies them (kubectl's go-yaml, Helm, yq, Istio and
Envoy Gateway controllers).

PyYAML reads YAML 1.1 and keeps the last of two equal keys silently. Refused here, so a
manifest means the same thing everywhere:
- duplicate keys in a mapping;
- plain scalars that YAML 1.1 and 1.2 readers type differently (yes/no/on/off, y/n, 0644,
  0x1f, 1e3, 1_000, 1:30, dates, .inf): quote them;
- anchors, aliases and explicit tags, which some tools expand and others keep or drop.
"""

from __future__ import annotations

import re

import yaml

__all__ = ["YamlError", "load_all"]


class YamlError(ValueError):
    pass


# libyaml's parser when the wheel has it (the pinned manylinux wheels do). Measured on deploy/
# (5 files, checks and load): ~70 ms per pass with the pure-Python parser, ~4-5 ms with
# libyaml, ~5-6 ms for the 349-line hand-written reader this replaced.
_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_AMBIGUOUS = {"y", "Y", "n", "N", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON",
              "off", "Off", "OFF", "=", "<<"}
_SUSPECT = (
    re.compile(r"[-+]?0[0-9_]+"),                        # octal in YAML 1.1
    re.compile(r"[-+]?0[xXoObB][0-9a-fA-F_]+"),          # hex / octal / binary
    re.compile(r"[-+]?[0-9._]*[0-9][0-9._]*[eE][-+]?[0-9]+"),  # exponents: 1.1 and 1.2 differ
    re.compile(r"[-+]?[0-9]+(_[0-9]+)+"),                # 1_000
    re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?"),  # sexagesimal in 1.1
    re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?"),      # timestamps
    re.compile(r"[-+]?\.(inf|Inf|INF|nan|NaN|NAN)"),
)


def _line(mark) -> int:
    return mark.line + 1


def _check_events(text: str) -> None:
    for event in yaml.parse(text, Loader=_BASE):
        where = f"line {_line(event.start_mark)}"
        if isinstance(event, yaml.AliasEvent):
            raise YamlError(f"{where}: alias *{event.anchor}: write the value out")
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            raise YamlError(f"{where}: anchor &{event.anchor}: write the value out")
        if isinstance(event, yaml.ScalarEvent):
            if event.tag is not None and not any(event.implicit):
                raise YamlError(f"{where}: explicit tag {event.tag}")
            # Plain style: None from the Python parser, "" from libyaml's.
            if not event.style and (event.value in _AMBIGUOUS
                                        or any(p.fullmatch(event.value) for p in _SUSPECT)):
                raise YamlError(f"{where}: plain scalar {event.value!r} is read differently "
                                "by YAML readers: quote it")
        elif isinstance(event, yaml.CollectionStartEvent) and event.tag is not None \
                and not event.implicit:
            raise YamlError(f"{where}: explicit tag {event.tag}")


class _NoDuplicates(_BASE):
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise YamlError(f"line {_line(key_node.start_mark)}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_all(text: str) -> list:
    """Every non-empty document of `text`; YamlError for what is refused or malformed."""
    try:
        _check_events(text)
        return [d for d in yaml.load_all(text, Loader=_NoDuplicates) if d is not None]
    except yaml.YAMLError as e:
        raise YamlError(str(e)) from None
