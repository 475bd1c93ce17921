"""A bad filter config makes Envoy refuse the plugin: `--mode validate` fails, and a real
start exits non-zero before it is ready (with xDS this would be a NACK)."""

from __future__ import annotations

import json
import re

import pytest

from conftest import EnvoyFactory
from harness import envoy as envoy_harness
from harness.envoy import EnvoyExited
from harness.keys import jwks

ISS = "https://idp.test/"


def good_config(local_keys: str, **top) -> dict:
    return {
        "providers": {"p": {"issuer": ISS, "audiences": ["api"],
                            "local_jwks": {"inline_string": local_keys}}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}],
        **top,
    }


def bad_configs(local_keys: str) -> list[tuple[str, dict | str]]:
    def with_provider(**fields):
        cfg = good_config(local_keys)
        cfg["providers"]["p"].update(fields)
        return cfg

    def with_rules(rules, **top):
        cfg = good_config(local_keys, **top)
        cfg["rules"] = rules
        return cfg

    remote = {"http_uri": {"uri": "http://127.0.0.1:1/jwks.json", "cluster": "idp"}}
    return [
        ("not-json", '{"providers": '),
        ("not-an-object", "[]"),
        ("unknown-top-level-field", {**good_config(local_keys), "providerz": {}}),
        ("unknown-provider-field", with_provider(issuer_url=ISS)),
        ("issuer-not-a-string", with_provider(issuer=42)),
        ("no-providers", {"rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]}),
        ("rule-names-unknown-provider",
         with_rules([{"match": {"prefix": "/"}, "requires": {"provider_name": "nope"}}])),
        ("requirement-name-not-in-map",
         with_rules([{"match": {"prefix": "/"}, "requirement_name": "missing"}])),
        ("per-route-unknown-requirement",
         {**good_config(local_keys), "per_route": {"default": {"requirement_name": "missing"}}}),
        ("bad-regex", with_rules([{"match": {"safe_regex": {"regex": "(unclosed"}}}])),
        ("unknown-algorithm", with_provider(algorithms=["RS256", "XS999"])),
        ("hs256-with-remote-jwks", with_provider(local_jwks=None, remote_jwks=remote, algorithms=["HS256"])),
        ("both-key-sources", with_provider(remote_jwks=remote)),
        ("no-key-source", with_provider(local_jwks=None)),
        ("local-jwks-not-a-key-set", with_provider(local_jwks={"inline_string": '{"keys": 1}'})),
        ("bad-duration", with_provider(local_jwks=None, remote_jwks={**remote, "cache_duration": "10m"})),
        ("max-token-bytes-too-small", with_provider(max_token_bytes=10)),
        ("mtls-not-a-mode", with_provider(sender_constraint={"mtls": "on"})),
        ("identity-header-is-authorization",
         with_provider(claim_to_headers=[{"header_name": "authorization", "claim_name": "sub"}])),
        ("requires-any-with-one-child",
         with_rules([{"match": {"prefix": "/"},
                      "requires": {"requires_any": {"requirements": [{"provider_name": "p"}]}}}])),
    ]


def _strip_none(cfg):
    if isinstance(cfg, dict):
        return {k: _strip_none(v) for k, v in cfg.items() if v is not None}
    return cfg


@pytest.fixture(scope="module")
def local_keys(published_keys) -> str:
    return json.dumps(jwks(published_keys))


@pytest.fixture(scope="module")
def factory(tmp_path_factory, wasm_path, idp, backends):
    f = EnvoyFactory(tmp_path_factory, wasm_path, idp, backends)
    yield f
    f.stop_all()


def validate(factory, tmp_path, filter_config):
    path = tmp_path / "envoy.yaml"
    path.write_text(factory.config_text(filter_config))
    return envoy_harness.validate(path)


def test_good_config_validates(factory, tmp_path, local_keys):
    result = validate(factory, tmp_path, good_config(local_keys))
    assert result.returncode == 0, envoy_harness.tail(result.stdout + result.stderr, 60)


_NAMES = [name for name, _ in bad_configs("{}")]


@pytest.mark.parametrize("name", _NAMES)
def test_bad_config_is_refused_by_validate(factory, tmp_path, local_keys, name):
    cfg = dict(bad_configs(local_keys))[name]
    cfg = cfg if isinstance(cfg, str) else _strip_none(cfg)
    result = validate(factory, tmp_path, cfg)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{name}: Envoy accepted a bad filter config:\n{envoy_harness.tail(output, 30)}"
    # Refused by the filter's on_configure (which logs why), not by Envoy's own config checks.
    assert "Plugin jwt_edge failed to load" in output, envoy_harness.tail(output, 30)
    assert re.search(r"\[error\]\[wasm\].*wasm log jwt_edge", output), envoy_harness.tail(output, 30)


def test_bad_config_stops_envoy_start(factory, local_keys):
    cfg = good_config(local_keys)
    cfg["rules"][0]["requires"] = {"provider_name": "nope"}
    with pytest.raises(EnvoyExited) as exc:
        factory(cfg)
    assert exc.value.returncode != 0
    assert "Plugin jwt_edge failed to load" in exc.value.log
