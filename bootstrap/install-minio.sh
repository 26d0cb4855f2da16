#!/usr/bin/env bash
# Builds MinIO (an S3-compatible server) from its Go module and caches it by version, for the S3 backend test
# (test/e2e/s3-backend.test.ts). Like install-pulumi.sh: release downloads are out of reach, the Go module proxy
# is not.
#
# Usage:
#   MINIO="$(bash bootstrap/install-minio.sh | tail -1)"
#
# Installs ${XDG_CACHE_HOME:-$HOME/.cache}/kiloclaw-rollout/minio-<version>/bin/minio and prints its path as
# the last (only) line on stdout; progress goes to stderr (every PROGRESS_SECONDS, default 20), the build log to
# ${TMPDIR:-/tmp}/install-minio.log. About 3-5 minutes on 2 cores the first time, instant afterwards.
set -euo pipefail

# MinIO tags no semver releases; the module proxy serves this commit (2026-02-12) as a pseudo-version.
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"

install_root="${XDG_CACHE_HOME:-$HOME/.cache}/kiloclaw-rollout/minio-$MINIO_VERSION"
bin="$install_root/bin/minio"
log_file="${TMPDIR:-/tmp}/install-minio.log"

say() { echo "install-minio: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  say "error: the go toolchain is needed to build MinIO (go 1.25 or newer)"
  exit 1
fi

mkdir -p "$install_root"
# Serialise concurrent runs on the same cache dir.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$install_root/.lock"
  flock 9
fi

if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
  say "using cached MinIO $MINIO_VERSION"
  echo "$bin"
  exit 0
fi

say "building MinIO $MINIO_VERSION from Go modules: about 3-5 minutes on 2 cores the first time; log: $log_file"
staging="$(mktemp -d "$install_root/staging.XXXXXX")"
ticker=""
trap '[[ -n $ticker ]] && kill "$ticker" 2>/dev/null; rm -rf "$staging"' EXIT
: >"$log_file"
started=$SECONDS
(
  trap 'exit 0' TERM
  while sleep "${PROGRESS_SECONDS:-20}"; do
    say "$((SECONDS - started))s so far ($(grep -c '^go: downloading' "$log_file" || true) modules downloaded, $(grep -vc '^go: ' "$log_file" || true) packages compiled)"
  done
) &
ticker=$!
# GOFLAGS cleared: the caller's -mod=... does not apply to `go install module@version`.
if ! GOFLAGS="-trimpath" GOBIN="$staging" go install -v -ldflags "-s -w" "github.com/minio/minio@$MINIO_VERSION" >>"$log_file" 2>&1; then
  say "error: go install github.com/minio/minio@$MINIO_VERSION failed; last lines of $log_file:"
  tail -n 40 "$log_file" >&2
  exit 1
fi
kill "$ticker" 2>/dev/null || true
ticker=""
mkdir -p "$install_root/bin"
mv -f "$staging/minio" "$bin"
say "built MinIO in $((SECONDS - started))s: $bin"
echo "$bin"
