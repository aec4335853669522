# Sourced by compose_test.sh and compose_test_ray.sh (ROOT and PROJECT set): picks the container engine.
# podman + podman-compose (the .venv's) where podman is installed (or can be, as root), else docker compose.
# Sets ENGINE, COMPOSE (an array) and BASE_IMAGE; exports the image names the compose file reads.
if command -v podman >/dev/null || [ "$(id -u)" = 0 ]; then
    BASE_IMAGE=$(deploy/podman_setup.sh | tail -1)
    export BASE_IMAGE CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}
    ENGINE=podman
    COMPOSE=("$ROOT/.venv/bin/podman-compose" -p "$PROJECT")
else
    ENGINE=docker
    export BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
    COMPOSE=(docker compose -p "$PROJECT")
fi
export IMAGE_PREFIX=${IMAGE_PREFIX:-localhost/convlens-} IMAGE_TAG=${IMAGE_TAG:-latest}
