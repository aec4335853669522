#!/usr/bin/env bash
# make compose-test: build both images, start the compose stack, wait for health, smoke-test the API,
# drive the dashboard in headless Chromium, tear everything down (volumes included). Prints a timing table.
#
# Engine: podman + podman-compose (the .venv's) where podman is installed, else docker compose.
# Ports: COMPOSE_TEST_API_PORT / COMPOSE_TEST_DASHBOARD_PORT (default: free ones, on 127.0.0.1).
# KEEP_STACK=1 leaves the stack running (tear it down with the printed command).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
PROJECT=${COMPOSE_TEST_PROJECT:-convlens-test}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
API_PORT=${COMPOSE_TEST_API_PORT:-$(free_port)}
DASH_PORT=${COMPOSE_TEST_DASHBOARD_PORT:-$(free_port)}
OUT=${COMPOSE_TEST_OUT:-$ROOT/out/compose-test}
mkdir -p "$OUT"
declare -a TIMES=()
t0=$(date +%s)
step_start=$t0
step() {  # step NAME: close the previous step's timer
    local now; now=$(date +%s)
    TIMES+=("$(printf '%-28s %5d s' "$1" $((now - step_start)))")
    step_start=$now
}

# shellcheck source=deploy/compose_engine.sh
source deploy/compose_engine.sh
export CONVLENS_BIND=127.0.0.1 CONVLENS_INFERENCE_PORT=$API_PORT CONVLENS_DASHBOARD_PORT=$DASH_PORT
step "setup ($ENGINE, $BASE_IMAGE)"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
ENGINE=$ENGINE deploy/build_images.sh api dashboard 2>&1 | tee "$OUT/build.log" | grep -E '^(==|STEP|\[|Error|error)' || true
[ "${PIPESTATUS[0]}" = 0 ] || { echo "image build failed; see $OUT/build.log" >&2; exit 1; }
fi
step "build images"

teardown() {
    if [ "${KEEP_STACK:-0}" = 1 ]; then
        echo "stack left running; tear down with: ${COMPOSE[*]} down -v"
        return
    fi
    "${COMPOSE[@]}" logs > "$OUT/stack.log" 2>&1 || true
    "${COMPOSE[@]}" down -v >/dev/null 2>&1 || true
}
trap teardown EXIT
"${COMPOSE[@]}" down -v >/dev/null 2>&1 || true   # leftovers of an interrupted run
"${COMPOSE[@]}" up -d --no-build 2>&1 | tail -5
step "compose up"

api_c=$("$ENGINE" ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=api" | head -1)
dash_c=$("$ENGINE" ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=dashboard" | head -1)
[ -n "$api_c" ] && [ -n "$dash_c" ] || { echo "containers not found" >&2; "$ENGINE" ps -a; exit 1; }
# podman 4 runs no healthcheck timers without systemd: run the compose healthchecks on demand.
wait_healthy() {  # wait_healthy CONTAINER NAME TIMEOUT
    local deadline=$(( $(date +%s) + $3 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if [ "$ENGINE" = podman ]; then
            podman healthcheck run "$1" >/dev/null 2>&1 && return 0
        else
            [ "$(docker inspect -f '{{.State.Health.Status}}' "$1")" = healthy ] && return 0
        fi
        if [ "$("$ENGINE" inspect -f '{{.State.Running}}' "$1")" != true ]; then
            echo "$2 is not running:" >&2; "$ENGINE" logs --tail 40 "$1" >&2; return 1
        fi
        sleep 3
    done
    echo "$2 not healthy within $3 s:" >&2; "$ENGINE" logs --tail 40 "$1" >&2; return 1
}
wait_healthy "$api_c" api 600
step "api healthy"
wait_healthy "$dash_c" dashboard 120
step "dashboard healthy"

# The inference key, as the dashboard reads it from the shared volume.
"$ENGINE" exec "$dash_c" cat /var/lib/convlens-key/key_file.json > "$OUT/key_file.json"
# Nothing but the two published ports answers from the host: management (8081), metrics (8082), gRPC.
for port in 8081 8082 7070 7071 8085; do
    if "$ENGINE" port "$api_c" "$port/tcp" >/dev/null 2>&1; then echo "port $port is published" >&2; exit 1; fi
done
published=$("$ENGINE" port "$api_c" | wc -l)
[ "$published" = 1 ] || { echo "the api publishes $published ports, expected 1" >&2; "$ENGINE" port "$api_c"; exit 1; }

"$PY" deploy/compose_smoke.py --api "http://127.0.0.1:$API_PORT" --dashboard "http://127.0.0.1:$DASH_PORT" \
    --key-file "$OUT/key_file.json" --screenshot "$OUT/dashboard.png" \
    --access-count "$ENGINE exec $api_c cat /var/lib/convlens/logs/access_log.log"
step "smoke + browser"

teardown
trap - EXIT
step "compose down -v"
echo
echo "compose-test passed ($ENGINE, base $BASE_IMAGE):"
printf '  %s\n' "${TIMES[@]}"
printf '  %-28s %5d s\n' "total" $(( $(date +%s) - t0 ))
