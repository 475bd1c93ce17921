"""Builders for the Envoy config blocks the tests use (JSON-serialisable dicts)."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WASM_PATH = REPO / "target" / "wasm32-wasip1" / "release" / "jwt_edge.wasm"

# Route name -> prefix. Envoy exposes the matched route's `name` to Wasm (`xds.route_name`),
# which the filter's `per_route` extension keys on. Order matters: first match wins.
ROUTES = (("health", "/health"), ("strict", "/strict"), ("default", "/"))


def wasm_filter(filter_config: dict | str, wasm_path: str | Path) -> dict:
    """`envoy.filters.http.wasm` running jwt-edge with `filter_config` (dict -> JSON)."""
    if isinstance(filter_config, dict) and "log_level" not in filter_config:
        # The tests read the filter's debug lines (key-set versions per VM, decisions); the
        # filter logs at `info` unless its config says otherwise (it does not ask the host).
        filter_config = {**filter_config, "log_level": "debug"}
    value = filter_config if isinstance(filter_config, str) else json.dumps(filter_config)
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "jwt_edge",
                "root_id": "jwt_edge",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": value,
                },
                "vm_config": {
                    "vm_id": "jwt_edge",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm_path)}},
                },
                # A trap reloads the VM instead of failing closed forever or, worse, open.
                "failure_policy": "FAIL_RELOAD",
            },
        },
    }


def router_filter() -> dict:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }


def route(name: str, prefix: str, cluster: str = "backend") -> dict:
    """A named route to `cluster`.

    Failover: `retry_on: connect-failure` with the `previous_hosts` predicate. A request that
    the round robin sends to a stopped backend fails to connect at once (loopback refuses),
    and the retry is steered to a host not tried yet, i.e. the healthy one. That is
    deterministic from the first request, unlike active health checks or outlier detection,
    which only eject a host after an interval or a number of failures.
    """
    return {
        "name": name,
        "match": {"prefix": prefix},
        "route": {
            "cluster": cluster,
            "timeout": "15s",
            "retry_policy": {
                "retry_on": "connect-failure",
                "num_retries": 2,
                "retry_host_predicate": [{
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
                    },
                }],
                "host_selection_retry_max_attempts": 5,
            },
        },
    }


def default_routes(cluster: str = "backend") -> list[dict]:
    return [route(name, prefix, cluster) for name, prefix in ROUTES]


def static_cluster(name: str, endpoints: list[tuple[str, int]], lb_policy: str = "ROUND_ROBIN") -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": lb_policy,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{
                "lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
                    for host, port in endpoints
                ],
            }],
        },
    }


def tls_transport_socket(cert: str | Path, key: str | Path, client_ca: str | Path,
                         require_client_certificate: bool) -> dict:
    """A TLS listener with this server certificate that asks clients for a certificate
    issued by `client_ca` (a client without one is let in unless
    `require_client_certificate`)."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": require_client_certificate,
            "common_tls_context": {
                "tls_certificates": [{
                    "certificate_chain": {"filename": str(cert)},
                    "private_key": {"filename": str(key)},
                }],
                "validation_context": {"trusted_ca": {"filename": str(client_ca)}},
            },
        },
    }
