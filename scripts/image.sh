#!/usr/bin/env bash
# Build Weir's image from deploy/Dockerfile with docker or podman, whichever is present
# (`make image`). Prints the image's name and size.
#
# With docker, the Dockerfile's default base (python:3.11.14-slim-bookworm) comes from the
# registry. With podman and no registry to pull from (as on the project's CI machines),
# the base is made locally: a minimal Debian bookworm with python3 by mmdebstrap, imported
# as localhost/weir-base:bookworm (once; about 20 s), and passed as PYTHON_IMAGE. Debian's
# podman runs as root here only with runc and ulimits within the shell's hard limits: a
# containers.conf of the project's own says so (CONTAINERS_CONF), /etc is left alone.
# Missing podman, runc or mmdebstrap are installed from Debian's packages (as root).
#
# Behind a TLS-inspecting proxy, pip inside the build needs the proxy's CA: with
# WEIR_IMAGE_EXTRA_CA=host the host's trust store is copied into deploy/extra-ca/ for the
# build and removed after. Images built so are for tests only.
#
#   scripts/image.sh [TAG]        (default TAG: localhost/weir:dev)
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-localhost/weir:dev}"
extra="${WEIR_IMAGE_EXTRA_CA:-}"

copy_ca() {
    if [ "$extra" = "host" ]; then
        cp /etc/ssl/certs/ca-certificates.crt deploy/extra-ca/host.pem
        trap 'rm -f deploy/extra-ca/host.pem' EXIT
    fi
}

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    copy_ca
    docker build -f deploy/Dockerfile -t "$tag" .
    echo "[image] $tag: $(docker image inspect --format '{{.Size}}' "$tag") bytes"
    exit 0
fi

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
bash scripts/debian-packages.sh image "${missing[@]}"

conf="$PWD/.stack/containers.conf"
mkdir -p .stack
# 16384, or the shell's hard limit if lower (runc was refused the full hard limit here).
limit() { if [ "$1" = unlimited ] || [ "$1" -gt 16384 ]; then echo 16384; else echo "$1"; fi; }
nofile=$(limit "$(ulimit -Hn)"); nproc=$(limit "$(ulimit -Hu)")
cat > "$conf" <<CONF
# Written by scripts/image.sh: runc (crun fails on hybrid cgroups here) and ulimits no
# higher than the shell's hard limits (root cannot raise them here).
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$conf"

base=localhost/weir-base:bookworm
if ! podman image exists "$base"; then
    echo "[image] making the base image $base (mmdebstrap, Debian bookworm minbase + python3)"
    work=$(mktemp -d)
    mmdebstrap --quiet --variant=minbase \
        --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$work/base.tar"
    podman import --quiet "$work/base.tar" "$base" >/dev/null
    rm -rf "$work"
fi
copy_ca
podman build --quiet --format docker -f deploy/Dockerfile \
    --build-arg "PYTHON_IMAGE=$base" -t "$tag" . >/dev/null
echo "[image] $tag: $(podman image inspect --format '{{.Size}}' "$tag") bytes"
