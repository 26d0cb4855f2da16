#!/usr/bin/env bash
# Makes sure a Docker engine answers, then makes sure the offline fixture base
# image exists. Idempotent: an engine that already answers (Docker Desktop, a
# system service, or one this script started earlier) is left alone.
#
# On the sandbox/CI machines there is no init system to run docker.service, so we
# start dockerd ourselves in the background, logging to /tmp/kiloclaw-dockerd.log.
#
# Env: DOCKERD_DEADLINE_SECONDS (default 60)   how long to wait for the engine
#      DOCKERD_STORAGE_DRIVER   (default auto)  overlay2, or vfs when /var/lib/docker
#                                               itself sits on overlayfs (docker-in-docker)
#      SKIP_FIXTURE_BASE=1                      only start the engine
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG=/tmp/kiloclaw-dockerd.log
PIDFILE=/var/run/docker.pid
DEADLINE_SECONDS="${DOCKERD_DEADLINE_SECONDS:-60}"

die() { echo "start-docker: $*" >&2; exit 1; }
engine_answers() { docker info >/dev/null 2>&1; }
# Alive = the pid we know is a live, non-zombie process, or dockerd's own pidfile
# names one (covers a setsid that forked instead of exec'ing).
dockerd_alive() {
  local pid
  for pid in "$1" "$(cat "$PIDFILE" 2>/dev/null || true)"; do
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null \
      && [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] && return 0
  done
  return 1
}

command -v docker >/dev/null || die "no docker client on PATH: run bootstrap/ci-deps.sh"

# dockerd turns IP forwarding on at start; without it every `docker run` and every legacy build step warns
# "IPv4 forwarding is disabled. Networking will not work." (an engine started with --ip-forward=false,
# as this script once did, leaves it off). Nothing leaves the host either way: no NAT rules are installed.
enable_ip_forward() {
  local knob=/proc/sys/net/ipv4/ip_forward
  if [[ "$(cat "$knob" 2>/dev/null)" == 0 && -w $knob ]]; then
    echo 1 >"$knob" 2>/dev/null && echo "start-docker: enabled IPv4 forwarding (quiets dockerd's per-container warning)"
  fi
  return 0
}

if engine_answers; then
  echo "start-docker: engine already answering ($(docker info -f '{{.ServerVersion}}' 2>/dev/null))"
  enable_ip_forward
else
  command -v dockerd >/dev/null || die "dockerd not installed: run bootstrap/ci-deps.sh (Debian package docker.io)"
  [[ $(id -u) -eq 0 ]] || die "dockerd needs root; run this script as root (or start Docker some other way)"

  # dockerd needs cgroups mounted (v1 controllers or the v2 unified hierarchy).
  if [[ ! -e /sys/fs/cgroup/cgroup.controllers && ! -d /sys/fs/cgroup/memory ]]; then
    die "no cgroup filesystem under /sys/fs/cgroup; mount one (e.g. 'mount -t cgroup2 none /sys/fs/cgroup') and retry"
  fi

  existing_pid=""
  [[ -s $PIDFILE ]] && existing_pid="$(cat "$PIDFILE")"
  if [[ -n $existing_pid ]] && kill -0 "$existing_pid" 2>/dev/null \
      && [[ "$(cat "/proc/$existing_pid/comm" 2>/dev/null)" == dockerd ]]; then
    # A dockerd is already starting (e.g. a parallel call): just wait for it below.
    echo "start-docker: dockerd (pid $existing_pid) is running but not answering yet; waiting"
  else
    # A stale pidfile from a killed dockerd makes the next one refuse to start.
    rm -f "$PIDFILE"

    storage_driver="${DOCKERD_STORAGE_DRIVER:-auto}"
    if [[ $storage_driver == auto ]]; then
      mkdir -p /var/lib/docker
      # overlay2 cannot stack on overlayfs; vfs is slow but works anywhere.
      if [[ "$(stat -f -c %T /var/lib/docker)" == overlayfs ]]; then storage_driver=vfs; else storage_driver=overlay2; fi
    fi

    # Why these flags:
    #  --iptables=false --ip-masq=false
    #     containers only talk to this host: published ports go through
    #     docker-proxy on 127.0.0.1, nothing is NATed out of the machine, and the
    #     engine does not depend on the kernel's netfilter flavour. IP forwarding
    #     stays on (dockerd's default), or every container start warns about it.
    #  --storage-driver  see above.
    echo "start-docker: starting dockerd (storage driver $storage_driver), log $LOG"
    echo "---- $(date -u +%FT%TZ) start-docker.sh" >>"$LOG"
    # setsid + nohup: dockerd must outlive this script and the shell that ran it.
    nohup setsid dockerd \
      --iptables=false --ip-masq=false \
      --storage-driver="$storage_driver" \
      >>"$LOG" 2>&1 </dev/null &
    existing_pid=$!
  fi

  deadline=$((SECONDS + DEADLINE_SECONDS))
  until engine_answers; do
    if ! dockerd_alive "$existing_pid"; then
      echo "start-docker: dockerd exited before answering; last lines of $LOG:" >&2
      tail -n 30 "$LOG" >&2 || true
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "start-docker: dockerd did not answer 'docker info' within ${DEADLINE_SECONDS}s; last lines of $LOG:" >&2
      tail -n 30 "$LOG" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
  echo "start-docker: engine answering ($(docker info -f '{{.ServerVersion}} {{.Driver}}' 2>/dev/null))"
fi

if [[ "${SKIP_FIXTURE_BASE:-}" != 1 ]]; then
  bash "$HERE/import-fixture-base.sh"
fi
