#!/usr/bin/env bash
# Installs the Debian packages the docker-backed tests need. Idempotent: apt is
# skipped entirely when every package is already installed, so repeated CI runs
# cost nothing and work without the network.
set -euo pipefail

# docker.io        : dockerd + containerd + runc (the engine; the client may come from elsewhere)
# docker-registry  : the distribution registry, our stand-in for registry.fly.io
# apache2-utils    : htpasswd -B (the registry only accepts bcrypt entries)
# busybox-static   : the one binary our offline fixture base image is made of
# curl             : the smoke test's gateway probe
# (iptables, containerd, runc come in as hard dependencies of docker.io)
PACKAGES=(docker.io docker-registry apache2-utils busybox-static curl)

missing=()
for pkg in "${PACKAGES[@]}"; do
  # dpkg-query prints "install ok installed" only for a fully installed package.
  if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "ci-deps: all present (${PACKAGES[*]})"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "ci-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi

echo "ci-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps out extras we never use (e.g. the registry's
# recommended packages); the ones we need are listed explicitly above.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "ci-deps: installed ${missing[*]}"
