#!/usr/bin/env bash
# The runbook's Step 2 "Quick validation" as a developer pastes it: three blocks,
# each an `&&` chain with a fixed `sleep 15`, one after the other. A failed chain
# stops only its own block (as in a terminal), and the outcome a developer sees is
# the status of the last block. For the benchmark to time against the project's
# validation. Differences from the runbook, and why:
#   - the image is given (IMAGE) instead of built here: the bench builds it once
#     and every validation tests that same image;
#   - test 3 publishes a free host port (HOST_PORT) instead of 18800, bound to
#     127.0.0.1 (this machine allows loopback only);
#   - container names get a random suffix so parallel runs cannot clash;
#   - before exiting it reports which containers a broken chain left running,
#     then an EXIT trap removes them (the runbook would leave them).
# Stderr lines for the bench: "runbook-smoke: step <name> <ms> <exit status>" per
# command, "runbook-smoke: left-running <name>" per container a chain left behind.
#
# Env: IMAGE (required), HOST_PORT (default: a free port found here),
#      RUN_ID (default: random) the container name suffix.
# Exit: the status of the last block (what `echo $?` shows after pasting them).
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
step() { # step NAME COMMAND...: runs it, prints how long it took and its status, returns its status
  local name=$1; shift
  local t0 rc=0
  t0=$(now_ms)
  "$@" || rc=$?
  echo "runbook-smoke: step $name $(( $(now_ms) - t0 )) $rc" >&2
  return "$rc"
}

# 1. Build test (the build itself is done once by the bench)
step version docker run --rm "$IMAGE" openclaw --version

# 2. Startup test
step startup-run docker run -d --name "$C_TEST" \
  -e KILOCODE_API_KEY=test-key \
  -e OPENCLAW_GATEWAY_TOKEN=test-token \
  "$IMAGE" &&
  step startup-sleep sleep 15 &&
  step startup-check bash -c "docker ps | grep '$C_TEST'" &&
  step startup-stop docker stop "$C_TEST" &&
  step startup-rm docker rm "$C_TEST"

# 3. Gateway test (a free port instead of 18800)
step gateway-run docker run -d --name "$C_GATEWAY" \
  -p "127.0.0.1:$HOST_PORT:18789" \
  -e KILOCODE_API_KEY=test-key \
  -e OPENCLAW_GATEWAY_TOKEN=test-token \
  "$IMAGE" &&
  step gateway-sleep sleep 15 &&
  step gateway-check curl -f "http://localhost:$HOST_PORT/" &&
  step gateway-stop docker stop "$C_GATEWAY" &&
  step gateway-rm docker rm "$C_GATEWAY"
outcome=$?

for c in "$C_TEST" "$C_GATEWAY"; do
  if [[ -n "$(docker ps -q --filter "name=^$c\$")" ]]; then echo "runbook-smoke: left-running $c" >&2; fi
done
exit "$outcome"
