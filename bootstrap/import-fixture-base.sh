#!/usr/bin/env bash
# Builds the offline base image `kiloclaw-fixture-base:1` that the test fixtures
# under sandbox/fixtures/kiloclaw*/ start FROM. Nothing can be pulled on CI (no
# Docker Hub), so the image is `docker import`ed from a tar made right here:
#   - static busybox (Debian's busybox-static) with a symlink for every applet
#     (sh, httpd, sleep, cat, ...),
#   - a fake /usr/local/bin/npm so that the Dockerfile line the real image uses,
#       RUN npm install -g openclaw@X.Y.Z && openclaw --version
#     works offline: it writes /usr/local/bin/openclaw, which prints X.Y.Z for
#     --version (or $OPENCLAW_FIXTURE_REPORTS_VERSION when a build sets it, to
#     fake a pin/binary mismatch).
# Idempotent: does nothing when the image already exists (FORCE=1 rebuilds).
set -euo pipefail

IMAGE="${FIXTURE_BASE_IMAGE:-kiloclaw-fixture-base:1}"

docker info >/dev/null 2>&1 || { echo "import-fixture-base: Docker is not running: run bootstrap/start-docker.sh" >&2; exit 1; }

if [[ "${FORCE:-}" != 1 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "import-fixture-base: $IMAGE already exists"
  exit 0
fi

BUSYBOX="${BUSYBOX:-/bin/busybox}"
[[ -x $BUSYBOX ]] || { echo "import-fixture-base: no static busybox at $BUSYBOX: run bootstrap/ci-deps.sh (busybox-static)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,root,tmp,var/www}
chmod 1777 "$root/tmp"
chmod 700 "$root/root"

cp "$BUSYBOX" "$root/bin/busybox"
# One symlink per applet, at the path busybox itself says it lives at.
while read -r applet; do
  [[ $applet == bin/busybox ]] && continue
  ln -sf /bin/busybox "$root/$applet"
done < <("$BUSYBOX" --list-full)

printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

# The fake npm. Quoted heredoc: nothing here is expanded by this script.
cat >"$root/usr/local/bin/npm" <<'NPM'
#!/bin/sh
# Offline stand-in for npm in the kiloclaw test fixtures. It understands only
#   npm install -g openclaw@X.Y.Z
# and writes /usr/local/bin/openclaw, which answers --version with X.Y.Z
# (or with $OPENCLAW_FIXTURE_REPORTS_VERSION when that is set at install time).
set -eu
case "${1:-}" in
  --version|-v) echo "10.9.2-fixture"; exit 0 ;;
  install|i) shift ;;
  *) echo "npm (fixture): only 'npm install -g openclaw@X.Y.Z' works offline" >&2; exit 1 ;;
esac
spec=""
for arg in "$@"; do
  case "$arg" in
    -g|--global) ;;
    openclaw@*) spec="$arg" ;;
    *) echo "npm (fixture): cannot install '$arg' offline" >&2; exit 1 ;;
  esac
done
version="${spec#openclaw@}"
case "$version" in
  ''|*[!0-9.]*|.*|*.) echo "npm (fixture): need openclaw@X.Y.Z, got '${spec:-nothing}'" >&2; exit 1 ;;
esac
reports="${OPENCLAW_FIXTURE_REPORTS_VERSION:-$version}"
cat >/usr/local/bin/openclaw <<EOF
#!/bin/sh
# Written by the fixture npm for openclaw@$version.
case "\${1:-}" in
  --version|-v|-V|version) echo "$reports" ;;
  *) echo "openclaw (fixture $reports): only --version is implemented" >&2; exit 2 ;;
esac
EOF
chmod 755 /usr/local/bin/openclaw
echo "added 1 package in 0s (openclaw@$version, offline fixture)"
NPM
chmod 755 "$root/usr/local/bin/npm"

tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$work/rootfs.tar" .
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'WORKDIR /root' \
  --change 'CMD ["/bin/sh"]' \
  --message "kiloclaw-rollout offline fixture base (static busybox + fake npm)" \
  "$work/rootfs.tar" "$IMAGE" >/dev/null
echo "import-fixture-base: imported $IMAGE"
