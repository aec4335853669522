#!/usr/bin/env bash
# Make this machine able to build and run the compose stack with podman (idempotent; needs root or sudo).
#   - podman, runc, debootstrap and Debian's chromium (the browser check) from apt, if missing;
#   - deploy/podman/containers.conf (runc, cgroupfs: no systemd here) — export CONTAINERS_CONF to use it;
#   - a local base image when python:3.11-slim cannot be pulled (no registry access): Debian bookworm
#     (minbase + python3, python3-venv, ca-certificates) made with debootstrap, ~1 min, once.
# Prints the base image to use on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}
LOCAL_BASE=localhost/bookworm-python:3.11
if [ -n "${BASE_IMAGE:-}" ]; then
    echo "$BASE_IMAGE"; exit 0
fi
if podman image exists python:3.11-slim 2>/dev/null || podman image exists docker.io/library/python:3.11-slim; then
    echo python:3.11-slim; exit 0
fi
if podman image exists "$LOCAL_BASE"; then
    echo "$LOCAL_BASE"; exit 0
fi
if timeout 60 podman pull -q docker.io/library/python:3.11-slim >/dev/null 2>&1; then
    echo python:3.11-slim; exit 0
fi
echo "python:3.11-slim cannot be pulled: building $LOCAL_BASE with debootstrap" >&2
rootfs=$(mktemp -d /tmp/convlens-rootfs.XXXXXX)
trap '$SUDO rm -rf "$rootfs"' EXIT
$SUDO debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" >&2
$SUDO tar -C "$rootfs" -c . | podman import - "$LOCAL_BASE" >&2
echo "$LOCAL_BASE"
