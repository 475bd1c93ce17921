#!/usr/bin/env python3
"""Packages jwt_edge.wasm as an OCI image layout for Istio's Wasm image specification.

The image is the spec's "compat" variant: a standard OCI image whose single layer
(application/vnd.oci.image.layer.v1.tar+gzip) is a tar holding `plugin.wasm`, with the manifest
annotation module.wasm.image/variant=compat. Istio's WasmPlugin (url: oci://...) and Envoy
Gateway's EnvoyExtensionPolicy (code.type: Image) both pull this kind of image.

    python3 deploy/oci/build_oci.py --wasm target/wasm32-wasip1/release/jwt_edge.wasm \\
        --out target/oci/jwt-edge --tag 0.1.0

writes an OCI image layout directory (oci-layout, index.json, blobs/sha256/...) and prints the
digests and how to push it with the tools found on PATH (oras, crane, skopeo). Only the standard
library is used, and the output is reproducible: the same module gives the same digests
(fixed timestamps, owners and modes in the tar, no timestamp in the gzip header).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

LAYOUT_VERSION = "1.0.0"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
VARIANT_ANNOTATION = "module.wasm.image/variant"
PLUGIN_FILE = "plugin.wasm"
WASM_MAGIC = b"\0asm"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def layer_tar(wasm: bytes) -> bytes:
    """An uncompressed tar with one regular file, plugin.wasm, with fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN_FILE)
        info.size = len(wasm)
        info.mode = 0o444
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    # mtime=0 and no file name keep the gzip header, and so the digest, reproducible.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def build(wasm: bytes, tag: str, version: str | None = None) -> dict[str, bytes | str]:
    """Every blob of the image and the documents that point at them."""
    if not wasm.startswith(WASM_MAGIC):
        raise ValueError("not a WebAssembly module (no \\0asm magic)")
    tar = layer_tar(wasm)
    layer = gzip_bytes(tar)
    config = canonical_json({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
    })
    annotations = {
        VARIANT_ANNOTATION: "compat",
        "org.opencontainers.image.title": "jwt-edge",
        "org.opencontainers.image.description": "JWT verification filter (proxy-wasm)",
    }
    if version:
        annotations["org.opencontainers.image.version"] = version
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": sha256(config), "size": len(config)},
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": sha256(layer),
            "size": len(layer),
            "annotations": {"org.opencontainers.image.title": PLUGIN_FILE},
        }],
        "annotations": annotations,
    })
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": sha256(manifest),
            "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    })
    return {"config": config, "layer": layer, "manifest": manifest, "index": index,
            "wasm_sha256": hashlib.sha256(wasm).hexdigest()}


def write_layout(out: Path, parts: dict) -> None:
    """Writes the layout to a fresh directory next to `out`, then swaps it in."""
    out = out.resolve()
    if out.exists() and not (out / "oci-layout").is_file():
        raise SystemExit(f"{out} exists and is not an OCI image layout; not replacing it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        blobs = tmp / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        for key in ("config", "layer", "manifest"):
            data = parts[key]
            (blobs / sha256(data).removeprefix("sha256:")).write_bytes(data)
        (tmp / "oci-layout").write_text(json.dumps({"imageLayoutVersion": LAYOUT_VERSION}))
        (tmp / "index.json").write_bytes(parts["index"])
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def push_hints(out: Path, tag: str) -> list[str]:
    ref = f"REGISTRY/jwt-edge:{tag}"
    commands = {
        "oras": f"oras cp --from-oci-layout {out}:{tag} {ref}",
        "crane": f"crane push {out} {ref}",
        "skopeo": f"skopeo copy oci:{out}:{tag} docker://{ref}",
    }
    found = [tool for tool in commands if shutil.which(tool)]
    lines = []
    if found:
        lines.append("push it (REGISTRY = your registry and repository path) with:")
        lines += [f"  {commands[tool]}" for tool in found]
    else:
        lines.append("no oras, crane or skopeo on PATH; with one of them installed, push with:")
        lines += [f"  {command}" for command in commands.values()]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wasm", required=True, type=Path, help="the module (jwt_edge.wasm)")
    parser.add_argument("--out", required=True, type=Path, help="OCI image layout directory")
    parser.add_argument("--tag", required=True, help="the tag recorded in index.json")
    parser.add_argument("--version", help="org.opencontainers.image.version (default: --tag)")
    args = parser.parse_args(argv)

    try:
        wasm = args.wasm.read_bytes()
    except OSError as e:
        print(f"error: cannot read {args.wasm}: {e.strerror} (run `make build`)", file=sys.stderr)
        return 1
    try:
        parts = build(wasm, args.tag, args.version or args.tag)
    except ValueError as e:
        print(f"error: {args.wasm}: {e}", file=sys.stderr)
        return 1
    write_layout(args.out, parts)

    manifest_digest = sha256(parts["manifest"])
    print(f"OCI image layout: {args.out} (tag {args.tag}, variant compat, layer {PLUGIN_FILE})")
    print(f"  manifest digest: {manifest_digest}")
    print(f"    (pin it: url oci://REGISTRY/jwt-edge@{manifest_digest}, or Istio's sha256 field)")
    print(f"  module sha256:   {parts['wasm_sha256']}  (Envoy Gateway code.sha256)")
    for line in push_hints(args.out, args.tag):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
