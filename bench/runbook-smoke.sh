#!/usr/bin/env bash
# The runbook's Step 2 "Quick validation" as written (fixed `sleep 15`, `&&`
# chains, `docker stop` then `docker rm`), for the benchmark to time against
# scripts/smoke-test.sh. Differences from the runbook, and why:
#   - the image is given (IMAGE) instead of built here: the bench builds it once
#     and both validations test that same image;
#   - test 3 publishes a free host port (HOST_PORT) instead of 18800, bound to
#     127.0.0.1 (this machine allows loopback only);
#   - container names get a random suffix so parallel runs cannot clash;
#   - an EXIT trap removes the containers a failed chain leaves behind.
# It prints "runbook-smoke: step <name> <ms>" lines so the bench can tell the
# fixed sleeps and the `docker stop` waits apart.
#
# Env: IMAGE (required), HOST_PORT (default: a free port found here),
#      RUN_ID (default: random) the container name suffix.
# Exit: the exit status of the first command of a chain that failed, as the runbook's `&&` gives.
set -uo pipefail

IMAGE="${IMAGE:?IMAGE is required (a local image)}"
suffix="${RUN_ID:-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')}"
C_TEST="kiloclaw-test-$suffix"
C_GATEWAY="kiloclaw-gateway-$suffix"

free_port() { # a port on 127.0.0.1 that nothing listens on right now
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}
HOST_PORT="${HOST_PORT:-$(free_port)}"

cleanup() {
  docker rm -f "$C_TEST" "$C_GATEWAY" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# A signal ends the script (and so runs the EXIT trap) once the current command returns.
trap 'exit 130' INT
trap 'exit 143' TERM

now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
step() { # step NAME COMMAND...: runs it, prints how long it took, returns its status
  local name=$1; shift
  local t0 rc=0
  t0=$(now_ms)
  "$@" || rc=$?
  echo "runbook-smoke: step $name $(( $(now_ms) - t0 ))" >&2
  return "$rc"
}

# 1. Build test (the build itself is done once by the bench)
step version docker run --rm "$IMAGE" openclaw --version || exit $?

# 2. Startup test
step startup-run docker run -d --name "$C_TEST" \
  -e KILOCODE_API_KEY=test-key \
  -e OPENCLAW_GATEWAY_TOKEN=test-token \
  "$IMAGE" &&
  step startup-sleep sleep 15 &&
  step startup-check bash -c "docker ps | grep '$C_TEST'" &&
  step startup-stop docker stop "$C_TEST" &&
  step startup-rm docker rm "$C_TEST" || exit $?

# 3. Gateway test (a free port instead of 18800)
step gateway-run docker run -d --name "$C_GATEWAY" \
  -p "127.0.0.1:$HOST_PORT:18789" \
  -e KILOCODE_API_KEY=test-key \
  -e OPENCLAW_GATEWAY_TOKEN=test-token \
  "$IMAGE" &&
  step gateway-sleep sleep 15 &&
  step gateway-check curl -f "http://localhost:$HOST_PORT/" &&
  step gateway-stop docker stop "$C_GATEWAY" &&
  step gateway-rm docker rm "$C_GATEWAY" || exit $?
