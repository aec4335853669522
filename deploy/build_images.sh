#!/usr/bin/env bash
# Build the api and dashboard images with podman (or docker when there is no podman).
#
#   deploy/build_images.sh [api] [dashboard]        (both by default)
#
# BASE_IMAGE      base of both images (default python:3.11-slim; deploy/podman_setup.sh makes a local one
#                 where registries are unreachable and exports it)
# IMAGE_PREFIX    image names: ${IMAGE_PREFIX}api / ${IMAGE_PREFIX}dashboard (default localhost/convlens-)
# IMAGE_TAG       default latest
# Local wheel mirrors (PIP_FIND_LINKS / file:// extra indexes of the host's pip config) are bind-mounted
# into the build read-only and passed on, so pip inside the build finds what pip on the host finds.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$ENGINE" ] || { echo "error: neither podman nor docker is installed" >&2; exit 1; }
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
IMAGE_PREFIX=${IMAGE_PREFIX:-localhost/convlens-}
IMAGE_TAG=${IMAGE_TAG:-latest}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(api dashboard)

args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
if [ "$(basename "$ENGINE")" = podman ]; then
    args+=(--network=host --isolation chroot --format docker)  # docker format keeps HEALTHCHECK
fi
# The host's CA bundle (a TLS-intercepting proxy's CA lives there) for apt and pip inside the build.
CA=/etc/ssl/certs/ca-certificates.crt
if [ -f "$CA" ]; then
    args+=(--volume "$CA:$CA:ro" --build-arg "PIP_CERT=$CA")
fi
# Local wheel mirrors the host's pip uses (file:// indexes and find-links directories).
pip_cfg=$(python3 -m pip config list 2>/dev/null || true)
extra=$(sed -n "s/^global.extra-index-url='\(.*\)'$/\1/p" <<<"$pip_cfg" | tr '\n' ' ')
extra="${extra} ${PIP_EXTRA_INDEX_URL:-}"
links=$(sed -n "s/^global.find-links='\(.*\)'$/\1/p" <<<"$pip_cfg" | tr '\n' ' ')
links="${links} ${PIP_FIND_LINKS:-}"
mounts=()
for url in $extra $links; do
    path=${url#file://}
    [ "$path" != "$url" ] || [ "${url:0:1}" = / ] || continue   # only local paths are mounted
    dir=$path
    case "$dir" in */simple|*/simple/) dir=$(dirname "${dir%/}") ;; esac
    [ -d "$dir" ] && mounts+=("$dir")
done
if [ ${#mounts[@]} -gt 0 ]; then
    for dir in $(printf '%s\n' "${mounts[@]}" | sort -u); do args+=(--volume "$dir:$dir:ro"); done
    args+=(--build-arg "PIP_EXTRA_INDEX_URL=$(echo $extra)" --build-arg "PIP_FIND_LINKS=$(echo $links)")
fi

for target in "${targets[@]}"; do
    case "$target" in api|dashboard) ;; *) echo "error: unknown image $target (api, dashboard)" >&2; exit 2 ;; esac
    started=$(date +%s)
    echo "== building ${IMAGE_PREFIX}${target}:${IMAGE_TAG} from deploy/${target}.Dockerfile on ${BASE_IMAGE}"
    "$ENGINE" build "${args[@]}" -f "deploy/${target}.Dockerfile" -t "${IMAGE_PREFIX}${target}:${IMAGE_TAG}" .
    echo "== ${target}: built in $(( $(date +%s) - started )) s"
done
