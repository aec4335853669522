#!/usr/bin/env bash
# make compose-test-ray: build the api image, start the api with the compose profile "ray" (a Ray head and one
# worker), compute the CNN codes of a 512-image built-in dataset on the cluster from inside the api container,
# read them back from the cache in process, tear everything down (volumes included).
#
# Engine: podman + podman-compose (the .venv's) where podman is installed, else docker compose (as compose_test.sh).
# SKIP_BUILD=1 reuses the images; KEEP_STACK=1 leaves the stack running.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROJECT=${COMPOSE_TEST_PROJECT:-convlens-test-ray}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
OUT=${COMPOSE_TEST_OUT:-$ROOT/out/compose-test-ray}
mkdir -p "$OUT"
t0=$(date +%s)

# shellcheck source=deploy/compose_engine.sh
source deploy/compose_engine.sh
export CONVLENS_BIND=127.0.0.1 CONVLENS_INFERENCE_PORT=$(free_port) CONVLENS_DASHBOARD_PORT=$(free_port)
export COMPOSE_PROFILES=ray CONVLENS_RAY_ADDRESS=ray-head:6379 CONVLENS_RAY_WORKER_CPUS=${CONVLENS_RAY_WORKER_CPUS:-2}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    ENGINE=$ENGINE deploy/build_images.sh api > "$OUT/build.log" 2>&1 || { echo "image build failed; see $OUT/build.log" >&2; exit 1; }
fi

teardown() {
    if [ "${KEEP_STACK:-0}" = 1 ]; then
        echo "stack left running; tear down with: COMPOSE_PROFILES=ray ${COMPOSE[*]} down -v"
        return
    fi
    "${COMPOSE[@]}" logs > "$OUT/stack.log" 2>&1 || true
    "${COMPOSE[@]}" down -v >/dev/null 2>&1 || true
}
trap teardown EXIT
"${COMPOSE[@]}" down -v >/dev/null 2>&1 || true
"${COMPOSE[@]}" up -d --no-build ray-head ray-worker api 2>&1 | tail -5

api_c=$("$ENGINE" ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=api" | head -1)
[ -n "$api_c" ] || { echo "api container not found" >&2; "$ENGINE" ps -a; exit 1; }
# The api's entrypoint joins the cluster (retried while the head starts) and says so in its log.
deadline=$(( $(date +%s) + 300 ))
until "$ENGINE" logs "$api_c" 2>&1 | grep -q "joined the Ray cluster"; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "the api did not join the Ray cluster in 300 s" >&2; "$ENGINE" logs --tail 40 "$api_c" >&2; exit 1; }
    sleep 5
done
echo "api joined the Ray cluster after $(( $(date +%s) - t0 )) s"

"$ENGINE" exec "$api_c" python3 -m convlens dataset builtin raytest --n 512 | tail -1
on_ray=$("$ENGINE" exec "$api_c" python3 -m convlens codes raytest 2>>"$OUT/codes.err")
echo "$on_ray"
grep -q "cached=False .*ray=ray-head:6379" <<<"$on_ray" && grep -q "^codes=512 " <<<"$on_ray" \
    || { echo "codes did not run on the Ray cluster; see $OUT/codes.err" >&2; exit 1; }
in_process=$("$ENGINE" exec -e CONVLENS_RAY_ADDRESS= "$api_c" python3 -m convlens codes raytest)
echo "$in_process"
grep -q "cached=True" <<<"$in_process" || { echo "the cluster's codes were not read back in process" >&2; exit 1; }

teardown
trap - EXIT
echo "compose-test-ray passed ($ENGINE, base $BASE_IMAGE) in $(( $(date +%s) - t0 )) s"
