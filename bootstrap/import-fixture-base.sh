#!/usr/bin/env bash
# Builds the offline base image `kiloclaw-fixture-base:2` that the test fixture
# sandbox/fixtures/kiloclaw/Dockerfile starts FROM. Nothing can be pulled on CI (no
# Docker Hub), so the image is `docker import`ed from a tar made right here:
#   - static busybox (Debian's busybox-static) with a symlink for every applet
#     (sh, httpd, sleep, cat, ls, ...),
#   - a fake /usr/local/bin/npm so that the Dockerfile line the real image uses,
#       RUN npm install -g openclaw@X.Y.Z && openclaw --version
#     works offline: it writes /usr/local/bin/openclaw, which prints X.Y.Z for
#     --version and answers `openclaw doctor` with the warnings the runbook calls normal,
#   - a fake /usr/local/bin/node that prints v$NODE_VERSION (the real Dockerfile's
#     `ENV NODE_VERSION=…`),
#   - /usr/local/bin/kiloclaw-fixture-variant, run by the fixture Dockerfile's last
#     RUN: it turns the build args FIXTURE_FAULT and GATEWAY_BOOT_SECONDS into
#     /etc/kiloclaw-fixture.conf (read by the entrypoint and the fake openclaw), so
#     every test variant is the one Dockerfile with other build args.
# Idempotent: does nothing when the image already exists (FORCE=1 rebuilds).
# (Version 2 added node, doctor and the variants; bump the tag when the contents change.)
set -euo pipefail

IMAGE="${FIXTURE_BASE_IMAGE:-kiloclaw-fixture-base:2}"

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
# Offline stand-in for npm in the kiloclaw test fixture. It understands only
#   npm install -g openclaw@X.Y.Z
# and writes /usr/local/bin/openclaw for that version.
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
sed "s/@VERSION@/$version/" /usr/local/lib/kiloclaw-fixture/openclaw >/usr/local/bin/openclaw
chmod 755 /usr/local/bin/openclaw
echo "added 1 package in 0s (openclaw@$version, offline fixture)"
NPM

mkdir -p "$root/usr/local/lib/kiloclaw-fixture"
# What the fake npm installs as /usr/local/bin/openclaw (@VERSION@ = the pinned version).
cat >"$root/usr/local/lib/kiloclaw-fixture/openclaw" <<'OPENCLAW'
#!/bin/sh
# Fixture stand-in for openclaw@@VERSION@ (installed by the fixture npm).
FIXTURE_FAULT=""
[ -f /etc/kiloclaw-fixture.conf ] && . /etc/kiloclaw-fixture.conf
version="@VERSION@"
if [ "$FIXTURE_FAULT" = wrong-version ]; then
  # The binary disagrees with the pin: one patch release lower (or higher from .0).
  patch="${version##*.}"
  if [ "$patch" -gt 0 ]; then version="${version%.*}.$((patch - 1))"; else version="${version%.*}.1"; fi
fi
case "${1:-}" in
  --version|-v|-V|version) echo "$version" ;;
  doctor)
    if [ "$FIXTURE_FAULT" = doctor-crashes ]; then
      echo "OpenClaw doctor $version"
      echo "TypeError: Cannot read properties of undefined (reading 'sessions')" >&2
      echo "    at runDoctor (file:///usr/local/lib/node_modules/openclaw/dist/doctor.js:88:21)" >&2
      exit 1
    fi
    echo "OpenClaw doctor $version"
    [ -f /root/.openclaw/openclaw.json ] || echo "⚠ Config: /root/.openclaw/openclaw.json missing (run openclaw onboard)"
    echo "⚠ Sessions: no session directories found"
    echo "⚠ Gateway: not running (nothing listening on 18789)"
    echo "Doctor complete: 0 errors"
    ;;
  *) echo "openclaw (fixture $version): only --version and doctor are implemented" >&2; exit 2 ;;
esac
OPENCLAW

cat >"$root/usr/local/bin/node" <<'NODE'
#!/bin/sh
# Fixture stand-in for Node: reports the version the Dockerfile pins (ENV NODE_VERSION).
case "${1:-}" in
  --version|-v) echo "v${NODE_VERSION:-22.13.1}" ;;
  *) echo "node (fixture): only --version is implemented" >&2; exit 1 ;;
esac
NODE

cat >"$root/usr/local/bin/kiloclaw-fixture-variant" <<'VARIANT'
#!/bin/sh
# Run by the fixture Dockerfile's last RUN: records the variant for the entrypoint
# and the fake openclaw, and applies the faults that live in the image itself.
set -eu
fault="${FIXTURE_FAULT:-}"
boot="${GATEWAY_BOOT_SECONDS:-0}"
case "$fault" in
  ''|exits|no-gateway|wrong-version|no-clawd|doctor-crashes|bad-config) ;;
  *) echo "kiloclaw-fixture-variant: unknown FIXTURE_FAULT '$fault'" \
       "(exits, no-gateway, wrong-version, no-clawd, doctor-crashes, bad-config)" >&2; exit 1 ;;
esac
case "$boot" in ''|*[!0-9]*) echo "kiloclaw-fixture-variant: GATEWAY_BOOT_SECONDS must be whole seconds, got '$boot'" >&2; exit 1 ;; esac
printf 'FIXTURE_FAULT=%s\nGATEWAY_BOOT_SECONDS=%s\n' "$fault" "$boot" >/etc/kiloclaw-fixture.conf
if [ "$fault" = no-clawd ]; then rm -rf /root/clawd; fi
echo "fixture variant: ${fault:-good}, gateway boots in ${boot}s"
VARIANT
chmod 755 "$root/usr/local/bin/npm" "$root/usr/local/bin/node" "$root/usr/local/bin/kiloclaw-fixture-variant"

tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$work/rootfs.tar" .
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'WORKDIR /root' \
  --change 'CMD ["/bin/sh"]' \
  --message "kiloclaw-rollout offline fixture base (static busybox + fake npm, node, openclaw)" \
  "$work/rootfs.tar" "$IMAGE" >/dev/null
echo "import-fixture-base: imported $IMAGE"
