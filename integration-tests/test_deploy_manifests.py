"""The deployment files in deploy/: Istio, Envoy Gateway, NGINX (ngx_wasm_module), OCI image.

- every YAML manifest parses (PyYAML, with harness.manifests_yaml's checks for duplicate keys and
  scalars YAML readers type differently), and has apiVersion, kind and metadata.name;
- every filter configuration embedded in them (Istio pluginConfig, Envoy Gateway config, the
  NGINX proxy_wasm JSON) passes `jwt-edge check-config --strict` (the filter's own parser, no
  warnings); the Envoy-based ones also load in Envoy (`envoy --mode validate` with the module,
  the filter's on_configure, and the JWKS cluster under the name the platform gives it);
- the cross-references hold: Istio's cluster name outbound|<port>||<host> matches the shipped
  ServiceEntry and DestinationRule, Envoy Gateway's cluster is the one the EnvoyPatchPolicy
  adds, NGINX's host:port is a loopback server of nginx.conf that forwards with verified TLS;
- `deploy/oci/build_oci.py` writes a valid, reproducible OCI image layout of the built module
  (digests and sizes match the blobs, one tar+gzip layer holding plugin.wasm byte-identical to
  the module, the compat annotation);
- README.md's Deploying section links to files that exist.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness import config as envoy_config
from harness import envoy as envoy_harness
from harness.config import REPO
from harness.manifests_yaml import YamlError, load_all

DEPLOY = REPO / "deploy"
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
BUILD_OCI = DEPLOY / "oci" / "build_oci.py"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
ISTIO_CLUSTER = re.compile(r"outbound\|(\d+)\|([^|]*)\|(.+)")


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def documents(path: Path) -> list[dict]:
    return load_all(path.read_text())


def objects(kind: str) -> list[tuple[Path, dict]]:
    return [(p, d) for p in YAML_FILES for d in documents(p) if d.get("kind") == kind]


def one(kind: str) -> dict:
    found = objects(kind)
    assert len(found) == 1, f"expected one {kind} under deploy/, found {len(found)}"
    return found[0][1]


def remote_clusters(filter_config: dict) -> list[tuple[str, str]]:
    """(uri, cluster) of every remote key set in a filter config."""
    out = []
    for provider in filter_config.get("providers", {}).values():
        http = provider.get("remote_jwks", {}).get("http_uri")
        if http:
            out.append((http["uri"], http["cluster"]))
    return out


# -- NGINX config reading --------------------------------------------------------------
class Directive:
    def __init__(self, name: str, args: list[str], line: int, block: list | None):
        self.name, self.args, self.line, self.block = name, args, line, block

    def __repr__(self):
        return f"Directive({self.name!r}, {self.args!r}, line {self.line})"


def nginx_tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, value, line): kind is 'word', 'str' (quoted, value without quotes), '{', '}', ';'."""
    tokens, i, line = [], 0, 1
    while i < len(text):
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
        elif c in "{};":
            tokens.append((c, c, line))
            i += 1
        elif c in "'\"":
            j = i + 1
            while j < len(text) and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            if j >= len(text):
                raise ValueError(f"line {line}: unterminated quoted string")
            tokens.append(("str", text[i + 1:j], line))
            line += text.count("\n", i, j)
            i = j + 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "{};":
                j += 1
            tokens.append(("word", text[i:j], line))
            i = j
    return tokens


def parse_nginx(text: str) -> list[Directive]:
    tokens = nginx_tokens(text)
    pos = 0

    def block(top: bool) -> list[Directive]:
        nonlocal pos
        out = []
        while True:
            if pos >= len(tokens):
                if top:
                    return out
                raise ValueError("unbalanced braces: missing }")
            kind, value, line = tokens[pos]
            if kind == "}":
                if top:
                    raise ValueError(f"line {line}: unbalanced braces: stray }}")
                pos += 1
                return out
            if kind != "word":
                raise ValueError(f"line {line}: expected a directive name, got {value!r}")
            name, args = value, []
            pos += 1
            while pos < len(tokens) and tokens[pos][0] in ("word", "str"):
                args.append(tokens[pos][1])
                pos += 1
            if pos >= len(tokens):
                raise ValueError(f"line {line}: {name}: missing ; or {{")
            if tokens[pos][0] == ";":
                pos += 1
                out.append(Directive(name, args, line, None))
            elif tokens[pos][0] == "{":
                pos += 1
                out.append(Directive(name, args, line, block(False)))
            else:
                raise ValueError(f"line {line}: {name}: unexpected {tokens[pos][1]!r}")

    return block(True)


def find_directives(tree: list[Directive], name: str) -> list[Directive]:
    out = []
    for d in tree:
        if d.name == name:
            out.append(d)
        if d.block:
            out += find_directives(d.block, name)
    return out


def flatten(block: list[Directive]) -> dict[str, list[str]]:
    """name -> args of every directive in a block and its nested blocks."""
    out = {}
    for d in block:
        out[d.name] = d.args
        if d.block:
            out.update(flatten(d.block))
    return out


# -- the jwt-edge CLI ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def jwt_edge_cli() -> Path:
    """target/release/jwt-edge, built (or brought up to date) by cargo; or $JWT_EDGE_CLI."""
    if os.environ.get("JWT_EDGE_CLI"):
        return Path(os.environ["JWT_EDGE_CLI"])
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.fail("cargo not found: cannot build the jwt-edge CLI (or set JWT_EDGE_CLI)",
                    pytrace=False)
    result = subprocess.run([cargo, "build", "--release", "--quiet", "--bin", "jwt-edge"],
                            cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"cargo build --bin jwt-edge failed:\n{result.stderr[-4000:]}"
    path = REPO / "target" / "release" / "jwt-edge"
    assert path.is_file(), path
    return path


def check_config(cli: Path, filter_config: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "filter-config.json"
    path.write_text(json.dumps(filter_config, indent=2))
    return subprocess.run([str(cli), "check-config", "--strict", str(path)],
                          capture_output=True, text=True, timeout=60)


# -- YAML ---------------------------------------------------------------------------------
def test_deploy_files_present():
    for name in ("README.md", "istio/wasmplugin.yaml", "istio/trafficextension.yaml",
                 "istio/idp-serviceentry.yaml", "envoy-gateway/extension-policy.yaml",
                 "envoy-gateway/idp-cluster-patch.yaml", "nginx/nginx.conf",
                 "oci/build_oci.py", "oci/Dockerfile"):
        assert (DEPLOY / name).is_file(), f"deploy/{name} missing"


@pytest.mark.parametrize("path", YAML_FILES, ids=[rel(p) for p in YAML_FILES])
def test_manifest_parses(path):
    docs = documents(path)
    assert docs, f"{rel(path)} has no document"
    for doc in docs:
        assert isinstance(doc, dict), f"{rel(path)}: a document is not a mapping"
        assert {"apiVersion", "kind", "metadata", "spec"} <= doc.keys(), rel(path)
        assert doc["metadata"].get("name") and doc["metadata"].get("namespace"), rel(path)


@pytest.mark.parametrize("text, expected", [
    ("a: 1\nb: [x, 'y z', {c: d}]\n", {"a": 1, "b": ["x", "y z", {"c": "d"}]}),
    ("k:\n- a: 1\n  b: c\n- - m\n", {"k": [{"a": 1, "b": "c"}, ["m"]]}),
    ("u: oci://r/x:1.0  # c\nq: \"#no\"\nr: a,b\n", {"u": "oci://r/x:1.0", "q": "#no", "r": "a,b"}),
    ("c: outbound|443||h\ne:\nm: ~\nt: true\n", {"c": "outbound|443||h", "e": None, "m": None,
                                                  "t": True}),
    ("v: |\n  {\"a\": 1}\n  x\nw: 2\n", {"v": "{\"a\": 1}\nx\n", "w": 2}),
    ('"@type": x\npath: ""\n', {"@type": "x", "path": ""}),
])
def test_yaml_reader(text, expected):
    assert load_all(text) == [expected]


@pytest.mark.parametrize("text", [
    "a: 1\na: 2\n",                # duplicate key
    "a:\n  b: 1\n  b: 1\n",        # duplicate key, nested
    "on: 1\n",                     # 1.1 boolean as a key
    "a: yes\n", "a: off\n", "n: 1\n",  # 1.1 booleans
    "a: 0644\n", "a: 1e3\n",       # octal, exponent
    "a: 2026-01-01\n",             # timestamp
    "a: &x 1\n", "a: *x\n", "a: !t 1\n",
    "a:\n\tb: 1\n",                # tab
    "a: 1\n  b: 2\n",              # bad indentation
    "a: [1, 2\n",                  # unclosed flow
    "a: 'x\n",                     # unterminated quote
])
def test_yaml_reader_refuses(text):
    with pytest.raises(YamlError):
        load_all(text)


# -- the embedded filter configurations ----------------------------------------------------
def _nginx_tree():
    return parse_nginx(NGINX_CONF.read_text())


def embedded_configs() -> list[tuple[str, dict]]:
    out = []
    for path, doc in objects("WasmPlugin"):
        out.append((f"{rel(path)}:pluginConfig", doc["spec"]["pluginConfig"]))
    for path, doc in objects("TrafficExtension"):
        out.append((f"{rel(path)}:wasm.pluginConfig", doc["spec"]["wasm"]["pluginConfig"]))
    for path, doc in objects("EnvoyExtensionPolicy"):
        for i, wasm in enumerate(doc["spec"]["wasm"]):
            out.append((f"{rel(path)}:wasm[{i}].config", wasm["config"]))
    for i, directive in enumerate(find_directives(_nginx_tree(), "proxy_wasm")):
        out.append((f"{rel(NGINX_CONF)}:proxy_wasm[{i}]", json.loads(directive.args[1])))
    return out


EMBEDDED = embedded_configs()


def test_every_platform_has_an_embedded_config():
    sources = " ".join(name for name, _ in EMBEDDED)
    for needle in ("istio/wasmplugin.yaml", "istio/trafficextension.yaml",
                   "envoy-gateway/extension-policy.yaml", "nginx/nginx.conf"):
        assert needle in sources, needle


@pytest.mark.parametrize("name, filter_config", EMBEDDED, ids=[n for n, _ in EMBEDDED])
def test_embedded_config_passes_check_config(name, filter_config, jwt_edge_cli, tmp_path):
    result = check_config(jwt_edge_cli, filter_config, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{name}: jwt-edge check-config --strict:\n{output}"
    assert "warning:" not in output and "error:" not in output, output
    assert remote_clusters(filter_config), f"{name}: expected a remote key set"
    assert "per_route" not in filter_config, \
        f"{name}: route names are generated by the platform (or absent): use rules"


def test_check_config_refuses_a_broken_copy(jwt_edge_cli, tmp_path):
    """The check above would catch a manifest whose config the filter refuses."""
    broken = json.loads(json.dumps(EMBEDDED[0][1]))
    next(iter(broken["providers"].values()))["remote_jwks"]["http_uri"].pop("cluster")
    result = check_config(jwt_edge_cli, broken, tmp_path)
    assert result.returncode == 1 and "cluster" in result.stderr, result.stdout + result.stderr


def _envoy_wasm_filter(filter_config: dict, wasm_path: Path, name: str, root_id: str,
                       vm_id: str | None) -> dict:
    vm_config = {"runtime": "envoy.wasm.runtime.v8",
                 "code": {"local": {"filename": str(wasm_path)}}}
    if vm_id is not None:
        vm_config["vm_id"] = vm_id
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": root_id,
                "vm_config": vm_config,
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": json.dumps(filter_config)},
                "failure_policy": "FAIL_CLOSED",
            },
        },
    }


def _validate_in_envoy(http_filter: dict, clusters: list[dict], tmp_path: Path) -> None:
    backend = envoy_config.static_cluster("backend", [("127.0.0.1", 9)])
    text = envoy_harness.render(envoy_config.default_routes(), [http_filter,
                                envoy_config.router_filter()], [backend, *clusters])
    if SYSTEM_CA in text and not Path(SYSTEM_CA).exists():
        import certifi

        text = text.replace(SYSTEM_CA, certifi.where())
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    result = envoy_harness.validate(path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, envoy_harness.tail(output, 60)
    assert "jwt-edge configured" in output, envoy_harness.tail(output, 60)


def test_istio_config_loads_in_envoy(wasm_path, tmp_path):
    """As Istio builds it: plugin name <namespace>.<name>, root_id = pluginName, no vm_id, the
    JWKS cluster named outbound|443||<host> (here a stand-in for the one Istio generates)."""
    plugin = one("WasmPlugin")
    filter_config = plugin["spec"]["pluginConfig"]
    http_filter = _envoy_wasm_filter(
        filter_config, wasm_path,
        name=f"{plugin['metadata']['namespace']}.{plugin['metadata']['name']}",
        root_id=plugin["spec"]["pluginName"], vm_id=None)
    clusters = []
    for _, cluster in remote_clusters(filter_config):
        port, _, host = ISTIO_CLUSTER.fullmatch(cluster).groups()
        stand_in = envoy_config.static_cluster(cluster, [("127.0.0.1", int(port))])
        stand_in["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                         "UpstreamTlsContext",
                "sni": host,
            },
        }
        clusters.append(stand_in)
    _validate_in_envoy(http_filter, clusters, tmp_path)


def test_envoy_gateway_config_and_patch_cluster_load_in_envoy(wasm_path, tmp_path):
    """The filter config with the exact cluster the EnvoyPatchPolicy adds."""
    policy = one("EnvoyExtensionPolicy")
    wasm = policy["spec"]["wasm"][0]
    http_filter = _envoy_wasm_filter(wasm["config"], wasm_path, name=wasm["name"],
                                     root_id=wasm["rootID"], vm_id="")
    _validate_in_envoy(http_filter, list(patched_clusters().values()), tmp_path)


# -- Istio --------------------------------------------------------------------------------
def test_istio_wasmplugin():
    spec = one("WasmPlugin")["spec"]
    assert one("WasmPlugin")["apiVersion"] == "extensions.istio.io/v1alpha1"
    assert spec["phase"] == "AUTHN"
    assert spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["url"].startswith("oci://")
    assert spec["imagePullPolicy"] in ("IfNotPresent", "Always")
    assert spec["selector"]["matchLabels"]
    assert spec["pluginName"] == "jwt_edge"
    assert spec.get("type", "HTTP") == "HTTP"


def test_istio_traffic_extension_matches_the_wasmplugin():
    plugin = one("WasmPlugin")["spec"]
    ext = one("TrafficExtension")
    assert ext["apiVersion"] == "extensions.istio.io/v1alpha1"
    wasm = ext["spec"]["wasm"]
    assert ext["spec"]["selector"] == plugin["selector"]
    assert ext["spec"]["phase"] == plugin["phase"]
    for key in ("url", "imagePullPolicy", "pluginName", "failStrategy", "pluginConfig"):
        assert wasm[key] == plugin[key], key


def test_istio_cluster_exists_through_service_entry_and_destination_rule():
    """outbound|<port>||<host> is only built for a host and port a ServiceEntry declares; the
    DestinationRule makes it originate TLS with that host's SNI."""
    entries = [d for _, d in objects("ServiceEntry")]
    rules = {d["spec"]["host"]: d["spec"] for _, d in objects("DestinationRule")}
    for uri, cluster in remote_clusters(one("WasmPlugin")["spec"]["pluginConfig"]):
        m = ISTIO_CLUSTER.fullmatch(cluster)
        assert m, f"{cluster!r} is not an Istio outbound cluster name"
        port, subset, host = int(m.group(1)), m.group(2), m.group(3)
        assert subset == ""
        assert urlsplit(uri).hostname == host
        declared = [p for e in entries if host in e["spec"]["hosts"]
                    for p in e["spec"]["ports"] if p["number"] == port]
        assert len(declared) == 1, f"no ServiceEntry declares {host}:{port}"
        # HTTP: the filter speaks HTTP to the cluster; the DestinationRule adds TLS.
        assert declared[0]["protocol"] == "HTTP"
        entry = next(e for e in entries if host in e["spec"]["hosts"])
        assert entry["spec"]["location"] == "MESH_EXTERNAL"
        assert entry["spec"]["resolution"] == "DNS"
        if urlsplit(uri).scheme == "https":
            tls = rules[host]["trafficPolicy"]["tls"]
            assert tls["mode"] == "SIMPLE" and tls["sni"] == host
            assert host in tls.get("subjectAltNames", [])


# -- Envoy Gateway ------------------------------------------------------------------------
def patched_clusters() -> dict[str, dict]:
    """Clusters added by the EnvoyPatchPolicies under deploy/envoy-gateway, by name."""
    out = {}
    for path, doc in objects("EnvoyPatchPolicy"):
        assert path.parent.name == "envoy-gateway"
        assert doc["spec"]["type"] == "JSONPatch"
        assert doc["spec"]["targetRef"]["kind"] == "Gateway"
        for patch in doc["spec"]["jsonPatches"]:
            if patch["type"] != "type.googleapis.com/envoy.config.cluster.v3.Cluster":
                continue
            op = patch["operation"]
            assert (op["op"], op["path"]) == ("add", ""), "a new cluster is added at path \"\""
            value = op["value"]
            assert value["name"] == patch["name"] == value["load_assignment"]["cluster_name"]
            out[value["name"]] = value
    return out


def test_envoy_gateway_extension_policy():
    policy = one("EnvoyExtensionPolicy")
    assert policy["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
    spec = policy["spec"]
    assert [t["kind"] for t in spec["targetRefs"]] == ["HTTPRoute"]
    assert all(t["group"] == "gateway.networking.k8s.io" for t in spec["targetRefs"])
    for wasm in spec["wasm"]:
        code = wasm["code"]
        assert code["type"] in ("Image", "HTTP")
        field = code["type"].lower()
        assert field in code and ({"image", "http"} - {field}).isdisjoint(code)
        if code["type"] == "Image":
            assert not code["image"]["url"].startswith("oci://"), "registry/image:tag form"
        assert wasm["failOpen"] is False


def test_envoy_gateway_cluster_comes_from_the_patch_policy():
    clusters = patched_clusters()
    for wasm in one("EnvoyExtensionPolicy")["spec"]["wasm"]:
        for uri, cluster in remote_clusters(wasm["config"]):
            assert cluster in clusters, f"no EnvoyPatchPolicy adds cluster {cluster!r}"
            value = clusters[cluster]
            host = urlsplit(uri).hostname
            endpoints = [e["endpoint"]["address"]["socket_address"]
                         for group in value["load_assignment"]["endpoints"]
                         for e in group["lb_endpoints"]]
            assert [(a["address"], a["port_value"]) for a in endpoints] == [
                (host, urlsplit(uri).port or 443)]
            if urlsplit(uri).scheme == "https":
                tls = value["transport_socket"]["typed_config"]
                assert tls["sni"] == host
                sans = tls["common_tls_context"]["validation_context"][
                    "match_typed_subject_alt_names"]
                assert {"san_type": "DNS", "matcher": {"exact": host}} in sans


# -- NGINX --------------------------------------------------------------------------------
def test_nginx_parser_catches_unbalanced_braces():
    for bad in ("http { server { }", "http { } }", "events { worker_connections 1 }"):
        with pytest.raises(ValueError):
            parse_nginx(bad)


def test_nginx_conf_structure():
    tree = _nginx_tree()
    top = {d.name: d for d in tree}
    assert {"events", "wasm", "http"} <= top.keys()
    wasm = top["wasm"].block
    modules = {d.args[0]: d.args[1] for d in wasm if d.name == "module"}
    assert modules.get("jwt_edge", "").endswith(".wasm")
    # jwt-edge's shared-data keys are "jwt-edge/...": ngx_wasm_module puts them in this zone.
    assert any(d.name == "shm_kv" and d.args[0] == "jwt-edge" for d in wasm)
    assert any(d.name == "resolver" for d in wasm)
    filters = find_directives(top["http"].block, "proxy_wasm")
    assert filters, "no proxy_wasm directive"
    for d in filters:
        assert len(d.args) == 2 and d.args[0] in modules, d
        # Inside NGINX's single quotes: no escapes, no variables, no quote.
        assert not set(d.args[1]) & set("\\$'"), d
        json.loads(d.args[1])


def _servers_listening(tree: list[Directive]) -> dict[str, Directive]:
    out = {}
    for server in find_directives(tree, "server"):
        if server.block is None:
            continue  # an upstream's `server host:port;`
        for listen in (d for d in server.block if d.name == "listen"):
            out[listen.args[0]] = server
    return out


def test_nginx_key_set_fetches_go_to_a_host_port_that_exists():
    """ngx_wasm_module's dispatch_http_call takes host:port and speaks TLS when the call
    carries `:scheme: https`, which jwt-edge takes from the key-set URI
    (ngx_http_proxy_wasm_dispatch.c at 3bed278). A key set fetched through this nginx.conf's
    plain-HTTP loopback relay must therefore have an http:// URI (an https one is a TLS
    handshake against plain HTTP: no keys, 503 for ever, seen on a TLS-built NGINX), and the
    relay must reach the IdP with verified TLS."""
    tree = _nginx_tree()
    servers = _servers_listening(tree)
    relayed = 0
    for d in find_directives(tree, "proxy_wasm"):
        for uri, cluster in remote_clusters(json.loads(d.args[1])):
            m = re.fullmatch(r"([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d+)", cluster)
            assert m, f"cluster {cluster!r} is not host:port"
            if m.group(1) not in ("127.0.0.1", "[::1]", "localhost"):
                continue
            assert cluster in servers, f"no server listens on {cluster}"
            assert urlsplit(uri).scheme == "http", \
                f"{uri}: the loopback relay {cluster} speaks plain HTTP; use an http:// URI"
            forwarder = flatten(servers[cluster].block)
            assert forwarder["proxy_pass"][0].startswith("https://")
            assert forwarder["proxy_ssl_verify"] == ["on"]
            assert forwarder["proxy_ssl_server_name"] == ["on"]
            assert forwarder["proxy_ssl_name"] == [urlsplit(uri).hostname]
            assert forwarder["proxy_ssl_trusted_certificate"]
            relayed += 1
    assert relayed, "the example fetches its key set through the loopback relay"


def test_nginx_open_endpoint_is_an_exact_location_without_the_filter():
    tree = _nginx_tree()
    locations = find_directives(tree, "location")
    exact = [loc for loc in locations if loc.args[:1] == ["="]]
    assert exact and all(not find_directives(loc.block, "proxy_wasm") for loc in exact)


# -- OCI image layout ---------------------------------------------------------------------
def _blob(layout: Path, digest: str) -> bytes:
    algo, _, hexdigest = digest.partition(":")
    assert algo == "sha256" and re.fullmatch(r"[0-9a-f]{64}", hexdigest), digest
    return (layout / "blobs" / "sha256" / hexdigest).read_bytes()


def _checked(layout: Path, descriptor: dict) -> bytes:
    data = _blob(layout, descriptor["digest"])
    assert "sha256:" + hashlib.sha256(data).hexdigest() == descriptor["digest"]
    assert len(data) == descriptor["size"]
    return data


def _build_layout(wasm: Path, out: Path, tag: str = "9.9.9") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUILD_OCI), "--wasm", str(wasm), "--out",
                           str(out), "--tag", tag], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def oci_layout(wasm_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("oci") / "jwt-edge"
    result = _build_layout(wasm_path, out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result.stdout


def test_oci_layout(oci_layout, wasm_path):
    layout, _ = oci_layout
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    [entry] = index["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "9.9.9"

    manifest = json.loads(_checked(layout, entry))
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config = json.loads(_checked(layout, manifest["config"]))

    # Istio's compat variant: one layer, OCI tar+gzip, holding plugin.wasm.
    [layer_desc] = manifest["layers"]
    assert layer_desc["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    layer = _checked(layout, layer_desc)
    tar_bytes = gzip.decompress(layer)
    assert config["rootfs"] == {"type": "layers",
                                "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        [member] = tar.getmembers()
        assert member.name == "plugin.wasm" and member.isfile()
        assert tar.extractfile(member).read() == wasm_path.read_bytes()

    # Nothing in blobs/ that the manifest does not name.
    named = {entry["digest"], manifest["config"]["digest"], layer_desc["digest"]}
    present = {"sha256:" + p.name for p in (layout / "blobs" / "sha256").iterdir()}
    assert present == named


def test_oci_build_is_reproducible_and_prints_how_to_push(oci_layout, wasm_path, tmp_path):
    layout, stdout = oci_layout
    again = tmp_path / "again"
    result = _build_layout(wasm_path, again)
    assert result.returncode == 0
    assert (again / "index.json").read_bytes() == (layout / "index.json").read_bytes()
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    assert digest in stdout
    assert hashlib.sha256(wasm_path.read_bytes()).hexdigest() in stdout
    for tool in ("oras", "crane", "skopeo"):
        if shutil.which(tool) or "no oras, crane or skopeo" in stdout:
            assert f"{tool} " in stdout, tool


def test_oci_layout_reads_with_skopeo(oci_layout):
    skopeo = shutil.which("skopeo")
    assert skopeo is not None, "skopeo is not installed: `make skopeo-tool` installs it"
    layout, _ = oci_layout
    result = subprocess.run([skopeo, "inspect", f"oci:{layout}:9.9.9"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["Architecture"], info["Os"]) == ("wasm", "wasip1")
    assert len(info["Layers"]) == 1


def test_oci_build_refuses_what_is_not_a_module(tmp_path):
    bogus = tmp_path / "not.wasm"
    bogus.write_bytes(b"MZ not wasm")
    result = _build_layout(bogus, tmp_path / "out")
    assert result.returncode == 1 and "not a WebAssembly module" in result.stderr
    assert not (tmp_path / "out").exists()


def test_makefile_oci_target():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^oci:.*\bbuild\b", makefile, re.M)
    assert "deploy/oci/build_oci.py" in makefile


# -- README -------------------------------------------------------------------------------
def test_readme_deploying_section_links_resolve():
    readme = (REPO / "README.md").read_text()
    m = re.search(r"<!-- deploying:start -->(.*?)<!-- deploying:end -->", readme, re.S)
    assert m, "deploying markers missing"
    section = m.group(1)
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", section)
    assert links
    for link in links:
        if "://" in link:
            continue
        assert (REPO / link).exists(), f"README Deploying links to missing {link}"
    for needle in ("deploy/istio/wasmplugin.yaml", "deploy/envoy-gateway/extension-policy.yaml",
                   "deploy/nginx/nginx.conf", "envoy/docker-compose.yml", "deploy/README.md"):
        assert needle in links, needle
