#!/usr/bin/env bash
# The runbook's Step 2 "Quick validation" for a locally built kiloclaw image,
# as one command that the ImageValidation component runs (via @pulumi/command):
#   1. version : `openclaw --version` prints exactly EXPECTED_OPENCLAW_VERSION
#   2. startup : the container is still running after a short settle window
#   3. gateway : GET / on the published port 18789 answers 2xx
# Unlike the runbook it never sleeps a fixed 15 s: it polls, fails at once when a
# container exits, and gives up at a deadline. Containers get unique names and a
# label, and are always removed (success, failure, Ctrl-C, SIGTERM).
#
# Env: IMAGE (required)                      local image reference or id
#      EXPECTED_OPENCLAW_VERSION (required)  e.g. 2026.2.9
#      STARTUP_DEADLINE_SECONDS (60)         version + startup checks
#      GATEWAY_DEADLINE_SECONDS (90)         gateway check (real gateway: ~15 s)
#      SMOKE_SETTLE_SECONDS (3)              how long "still running" must hold
# Exit: 0 all passed, 1 a check failed, 2 usage/environment problem.
set -euo pipefail

LABEL="kiloclaw-rollout.smoke=1"
OWNER_KEY="kiloclaw-rollout.smoke.owner"
GATEWAY_PORT=18789
# The only env the containers get: the runbook's placeholders, never real secrets.
PLACEHOLDER_ENV=(-e KILOCODE_API_KEY=test-key -e OPENCLAW_GATEWAY_TOKEN=test-token)

usage_error() { echo "smoke-test: $*" >&2; exit 2; }
say() { echo "$*"; }
fail() { echo "✘ $*" >&2; exit 1; }

IMAGE="${IMAGE:-}"
EXPECTED="${EXPECTED_OPENCLAW_VERSION:-}"
STARTUP_DEADLINE="${STARTUP_DEADLINE_SECONDS:-60}"
GATEWAY_DEADLINE="${GATEWAY_DEADLINE_SECONDS:-90}"
SETTLE="${SMOKE_SETTLE_SECONDS:-3}"

[[ -n $IMAGE ]] || usage_error "IMAGE is required (the local image to test)"
[[ -n $EXPECTED ]] || usage_error "EXPECTED_OPENCLAW_VERSION is required (e.g. 2026.2.9)"
for pair in "STARTUP_DEADLINE_SECONDS=$STARTUP_DEADLINE" "GATEWAY_DEADLINE_SECONDS=$GATEWAY_DEADLINE" "SMOKE_SETTLE_SECONDS=$SETTLE"; do
  [[ ${pair#*=} =~ ^[1-9][0-9]*$ ]] || usage_error "${pair%%=*} must be a positive whole number of seconds, got '${pair#*=}'"
done

docker info >/dev/null 2>&1 || usage_error "Docker is not running: run bootstrap/start-docker.sh"
docker image inspect "$IMAGE" >/dev/null 2>&1 || usage_error "image '$IMAGE' is not in the local Docker engine; build it first"

# ---- cleanup: always remove our containers ---------------------------------
rand="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
PREFIX="kiloclaw-smoke-$rand"
C_VERSION="$PREFIX-version"
C_STARTUP="$PREFIX-startup"
C_GATEWAY="$PREFIX-gateway"
work="$(mktemp -d "${TMPDIR:-/tmp}/kiloclaw-smoke.XXXXXX")"
bg_pid=""
# Which run owns a container: lets a later run sweep up after one that was
# SIGKILLed (no trap runs then) without touching runs still in progress.
OWNER="$(hostname 2>/dev/null || echo unknown):$$"
LABELS=(--label "$LABEL" --label "$OWNER_KEY=$OWNER")

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # A docker client still running in the background (see run_with_deadline).
  if [[ -n $bg_pid ]]; then kill "$bg_pid" 2>/dev/null || true; fi
  docker rm -f -v "$C_VERSION" "$C_STARTUP" "$C_GATEWAY" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
# exit from a signal trap runs the EXIT trap; 128+signal is the usual status.
trap 'exit 130' INT
trap 'exit 143' TERM

# Bash runs traps only between foreground commands, so anything that may take a
# while runs in the background and we wait on it: a signal then interrupts the
# wait and cleanup runs at once. Returns the command's status, or 124 at the deadline.
run_with_deadline() {
  local seconds=$1; shift
  "$@" &
  bg_pid=$!
  local until=$((SECONDS + seconds))
  while kill -0 "$bg_pid" 2>/dev/null; do
    if ((SECONDS >= until)); then
      kill "$bg_pid" 2>/dev/null || true
      wait "$bg_pid" 2>/dev/null || true
      bg_pid=""
      return 124
    fi
    sleep 0.2
  done
  local rc=0
  wait "$bg_pid" || rc=$?
  bg_pid=""
  return "$rc"
}

trim() { # leading and trailing whitespace (incl. CR) of the whole text
  local s="$1"
  s="${s#"${s%%[![:space:]]*}"}"
  s="${s%"${s##*[![:space:]]}"}"
  printf '%s' "$s"
}

show_logs() { # last 30 log lines of a container, indented, on stderr
  echo "  last 30 log lines of $1:" >&2
  docker logs --tail 30 "$1" 2>&1 | sed 's/^/    | /' >&2 || true
}

state_of() { docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$1" 2>/dev/null || echo "missing -1"; }

say "smoke-test: $IMAGE (expecting openclaw $EXPECTED)"

# Sweep containers of earlier runs on this host whose process is gone.
docker ps -a --filter "label=$LABEL" --format "{{.ID}} {{.Label \"$OWNER_KEY\"}}" 2>/dev/null |
  while read -r id owner; do
    [[ $owner == "${OWNER%%:*}:"* ]] || continue # another host's run: not ours to judge
    pid="${owner##*:}"
    if [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
      docker rm -f -v "$id" >/dev/null 2>&1 && echo "smoke-test: removed leftover container $id of an earlier run (pid $pid)"
    fi
  done || true

# ---- 1. version -------------------------------------------------------------
rc=0
run_with_deadline "$STARTUP_DEADLINE" \
  docker run --rm --name "$C_VERSION" "${LABELS[@]}" "$IMAGE" openclaw --version \
  >"$work/version.out" 2>"$work/version.err" || rc=$?
if ((rc == 124)); then
  fail "openclaw --version did not finish within ${STARTUP_DEADLINE}s"
elif ((rc != 0)); then
  echo "✘ openclaw --version failed in the image (exit code $rc):" >&2
  sed 's/^/    | /' "$work/version.err" "$work/version.out" | tail -n 30 >&2
  exit 1
fi
got="$(trim "$(cat "$work/version.out")")"
if [[ $got != "$EXPECTED" ]]; then
  shown="$got"
  ((${#shown} <= 200)) || shown="${shown:0:200}..."
  fail "openclaw --version printed '$shown' but the expected version is '$EXPECTED'.
  Fix: align the Dockerfile pin (the 'npm install -g openclaw@X.Y.Z' line) with the
  version you roll out (kiloclaw:openclawVersion / OPENCLAW_VERSION in .dev.vars), rebuild, rerun."
fi
say "✔ openclaw --version = $got"

# ---- 2. startup ---------------------------------------------------------------
if ! docker run -d --name "$C_STARTUP" "${LABELS[@]}" "${PLACEHOLDER_ENV[@]}" "$IMAGE" \
  >/dev/null 2>"$work/startup.err"; then
  echo "✘ startup: docker run failed:" >&2
  sed 's/^/    | /' "$work/startup.err" >&2
  exit 1
fi
deadline=$((SECONDS + STARTUP_DEADLINE))
t0=$SECONDS
running_polls=0
while :; do
  read -r status code <<<"$(state_of "$C_STARTUP")"
  case $status in
    running)
      running_polls=$((running_polls + 1))
      # Polls are >= 0.5 s apart, so 2*SETTLE running polls span >= SETTLE seconds.
      if ((running_polls >= 2 * SETTLE)); then break; fi
      ;;
    exited | dead | missing)
      echo "✘ startup: the container exited with code $code about $((SECONDS - t0))s after start (env: KILOCODE_API_KEY=test-key OPENCLAW_GATEWAY_TOKEN=test-token)" >&2
      show_logs "$C_STARTUP"
      echo "  Next step (runbook Step 1): debug the entrypoint:" >&2
      echo "    docker run --rm -e KILOCODE_API_KEY=test-key -e OPENCLAW_GATEWAY_TOKEN=test-token $IMAGE bash -c 'bash -x /usr/local/bin/start-openclaw.sh 2>&1 | head -50'" >&2
      exit 1
      ;;
    *) running_polls=0 ;; # created / restarting / paused: not settled yet
  esac
  if ((SECONDS >= deadline)); then
    echo "✘ startup: the container was not steadily running within ${STARTUP_DEADLINE}s (state: $status)" >&2
    show_logs "$C_STARTUP"
    exit 1
  fi
  sleep 0.5
done
docker rm -f -v "$C_STARTUP" >/dev/null 2>&1 || true
say "✔ startup: container still running after ${SETTLE}s"

# ---- 3. gateway ---------------------------------------------------------------
# 127.0.0.1::PORT lets Docker pick a free host port (no clash with running
# instances or parallel runs); `docker port` tells us which.
if ! docker run -d --name "$C_GATEWAY" "${LABELS[@]}" -p "127.0.0.1::$GATEWAY_PORT" \
  "${PLACEHOLDER_ENV[@]}" "$IMAGE" >/dev/null 2>"$work/gateway.err"; then
  echo "✘ gateway: docker run failed:" >&2
  sed 's/^/    | /' "$work/gateway.err" >&2
  exit 1
fi
deadline=$((SECONDS + GATEWAY_DEADLINE))
t0=$SECONDS
url=""
last_error="no answer yet"
while :; do
  read -r status code <<<"$(state_of "$C_GATEWAY")"
  if [[ $status == exited || $status == dead || $status == missing ]]; then
    echo "✘ gateway: the container exited with code $code about $((SECONDS - t0))s after start, before the gateway answered" >&2
    show_logs "$C_GATEWAY"
    exit 1
  fi
  if [[ -z $url && $status == running ]]; then
    mapping="$(docker port "$C_GATEWAY" "$GATEWAY_PORT/tcp" 2>/dev/null | head -n 1 || true)"
    [[ -n $mapping ]] && url="http://127.0.0.1:${mapping##*:}/"
  fi
  if [[ -n $url ]]; then
    if http_code="$(curl -fsS -o /dev/null -w '%{http_code}' --max-time 3 "$url" 2>"$work/curl.err")"; then
      break
    fi
    last_error="$(trim "$(cat "$work/curl.err")")"
  fi
  if ((SECONDS >= deadline)); then
    echo "✘ gateway: no HTTP 2xx from ${url:-the published port} (container port $GATEWAY_PORT) within ${GATEWAY_DEADLINE}s; last error: $last_error" >&2
    show_logs "$C_GATEWAY"
    cat >&2 <<EOF
  Next step (runbook Troubleshooting, "Gateway not responding"): start the image by
  hand and look inside:
    docker run -d --name kiloclaw-test -e KILOCODE_API_KEY=test-key -e OPENCLAW_GATEWAY_TOKEN=test-token $IMAGE
    docker exec kiloclaw-test ps aux | grep openclaw
    docker exec kiloclaw-test curl http://localhost:$GATEWAY_PORT/
  (the real gateway logs "listening on ws://0.0.0.0:$GATEWAY_PORT" about 15 s after start;
  raise GATEWAY_DEADLINE_SECONDS if it is merely slow).
EOF
    exit 1
  fi
  sleep 0.5
done
say "✔ gateway: HTTP $http_code on $url after $((SECONDS - t0))s"
say "smoke-test: all 3 checks passed for $IMAGE"
