#!/usr/bin/env bash
# A local stand-in for registry.fly.io: Debian's `docker-registry` (the CNCF
# distribution registry) on 127.0.0.1, with htpasswd auth (user `x`, password =
# REGISTRY_TOKEN, as Fly expects `x` + a Fly token) and filesystem storage.
# Docker treats 127.0.0.0/8 registries as insecure by default, so plain http
# works for `docker login` / `docker push` without any daemon setting.
#
# Usage: sandbox/registry.sh start|stop|status
# Env:   REGISTRY_PORT       (5055)
#        REGISTRY_TOKEN      (required for start; never printed)
#        REGISTRY_STATE_DIR  ($REPO/.sandbox/registry)  data/, htpasswd, config, pid, log
#        REGISTRY_DEADLINE_SECONDS (30)                  how long start/stop wait
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${REGISTRY_PORT:-5055}"
STATE_DIR="${REGISTRY_STATE_DIR:-$REPO/.sandbox/registry}"
DEADLINE_SECONDS="${REGISTRY_DEADLINE_SECONDS:-30}"
PIDFILE="$STATE_DIR/registry.pid"
LOG="$STATE_DIR/registry.log"
CONFIG="$STATE_DIR/config.yml"
HTPASSWD="$STATE_DIR/htpasswd"
URL="http://127.0.0.1:$PORT/v2/"

die() { echo "registry: $*" >&2; exit 1; }

# The pid from our pidfile, if that process is still a docker-registry.
running_pid() {
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null || echo docker-registry)" == docker-registry ]] || return 1
  echo "$pid"
}

# HTTP status of an anonymous GET /v2/ ("000" when nothing answers).
v2_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL" 2>/dev/null || true; }

# Does the registry accept REGISTRY_TOKEN? The token goes to curl on stdin (a
# config line), never on its command line.
token_accepted() {
  local code escaped="${REGISTRY_TOKEN//\\/\\\\}"
  escaped="${escaped//\"/\\\"}"
  code="$(printf 'user = "x:%s"\n' "$escaped" |
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 -K - "$URL" 2>/dev/null || true)"
  [[ $code == 200 ]]
}

start() {
  [[ -n "${REGISTRY_TOKEN:-}" ]] || die "REGISTRY_TOKEN is required for start (it becomes the password of user x)"
  command -v docker-registry >/dev/null || die "docker-registry not installed: run bootstrap/ci-deps.sh"
  command -v htpasswd >/dev/null || die "htpasswd not installed: run bootstrap/ci-deps.sh (apache2-utils)"

  local pid
  if pid="$(running_pid)"; then
    # Idempotent start: fine if it is ours, on this port, with this token.
    grep -q "addr: 127.0.0.1:$PORT\$" "$CONFIG" 2>/dev/null ||
      die "a registry from $STATE_DIR (pid $pid) runs on another port; run '$0 stop' first"
    token_accepted ||
      die "the registry on 127.0.0.1:$PORT (pid $pid) does not accept this REGISTRY_TOKEN; run '$0 stop' first"
    echo "registry: already running on 127.0.0.1:$PORT (pid $pid)"
    return 0
  fi
  [[ "$(v2_status)" == 000 ]] || die "127.0.0.1:$PORT is already in use by another process"

  mkdir -p "$STATE_DIR/data"
  rm -f "$PIDFILE"
  # bcrypt (-B) is the only hash the registry accepts; -i reads the password
  # from stdin so it never shows up in `ps`.
  printf '%s\n' "$REGISTRY_TOKEN" | htpasswd -Bin x >"$HTPASSWD.tmp" 2>/dev/null
  mv "$HTPASSWD.tmp" "$HTPASSWD"
  chmod 600 "$HTPASSWD"

  cat >"$CONFIG" <<EOF
# Written by sandbox/registry.sh
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $STATE_DIR/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
  # A fixed secret silences the "no HTTP secret" warning; it only signs upload state.
  secret: kiloclaw-rollout-local-registry
auth:
  htpasswd:
    realm: kiloclaw-rollout-local-registry
    path: $HTPASSWD
EOF

  echo "---- $(date -u +%FT%TZ) registry.sh start on 127.0.0.1:$PORT" >>"$LOG"
  # setsid + nohup: the registry outlives this script and its caller's shell.
  nohup setsid docker-registry serve "$CONFIG" >>"$LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PIDFILE"

  # Ready when /v2/ answers 401: up, and auth is on.
  local deadline=$((SECONDS + DEADLINE_SECONDS)) code
  while :; do
    code="$(v2_status)"
    [[ $code == 401 ]] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PIDFILE"
      echo "registry: docker-registry exited during startup; last lines of $LOG:" >&2
      tail -n 20 "$LOG" >&2
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "registry: $URL did not answer 401 within ${DEADLINE_SECONDS}s (last status $code); last lines of $LOG:" >&2
      tail -n 20 "$LOG" >&2
      kill "$pid" 2>/dev/null || true
      rm -f "$PIDFILE"
      exit 1
    fi
    sleep 0.2
  done
  echo "registry: running on 127.0.0.1:$PORT (pid $pid, state $STATE_DIR)"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PIDFILE"
    echo "registry: not running (state $STATE_DIR)"
    return 0
  fi
  kill "$pid"
  local deadline=$((SECONDS + DEADLINE_SECONDS))
  while kill -0 "$pid" 2>/dev/null; do
    # A child of ours that exited stays a zombie until we exit: that counts as gone.
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && break
    if ((SECONDS >= deadline)); then
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$PIDFILE"
  echo "registry: stopped (pid $pid)"
}

status() {
  local pid
  if pid="$(running_pid)"; then
    echo "registry: running on 127.0.0.1:$PORT (pid $pid, /v2/ answers $(v2_status), state $STATE_DIR)"
  else
    echo "registry: not running (state $STATE_DIR)"
    return 3 # LSB "not running"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
