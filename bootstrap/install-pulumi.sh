#!/usr/bin/env bash
# Builds the Pulumi engine this project runs on, from Go modules, and caches it by version.
#
# Why: the official installer downloads release archives, which this project's machines cannot reach; the Go
# module proxy they can reach serves the engine's source. bootstrap/pulumi-build/ pins the modules (go.mod/go.sum).
#
# Usage:
#   PATH="$(bash bootstrap/install-pulumi.sh | tail -1):$PATH"
#
# Installs into ${XDG_CACHE_HOME:-$HOME/.cache}/kiloclaw-rollout/pulumi-v3.248.0/bin:
#   pulumi                          the CLI (pulumi version prints v3.248.0)
#   pulumi-language-nodejs          the Node.js language host (our own, see pulumi-build/cmd/pulumi-language-nodejs)
#   pulumi-resource-pulumi-nodejs   the dynamic-provider shim shipped in the sdk/v3 module
# The bin dir is the last (only) line on stdout; progress goes to stderr (what it builds, and every
# PROGRESS_SECONDS, default 20, how long it has run and what go is doing), the build log to
# ${TMPDIR:-/tmp}/install-pulumi-v3.248.0.log. A second run with nothing changed reuses the cache in seconds.
# Network: only the first build, for the Go module proxy (or an offline GOPROXY/GOFLAGS=-mod=vendor setup).
set -euo pipefail

PULUMI_VERSION="v3.248.0" # matches @pulumi/pulumi in package-lock.json

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build_module="$script_dir/pulumi-build"
install_root="${XDG_CACHE_HOME:-$HOME/.cache}/kiloclaw-rollout/pulumi-$PULUMI_VERSION"
bin_dir="$install_root/bin"
log_file="${TMPDIR:-/tmp}/install-pulumi-$PULUMI_VERSION.log"

say() { echo "install-pulumi: $*" >&2; }

# A stamp of everything the binaries are built from, so an edited go.mod or language host rebuilds.
build_stamp() {
  {
    echo "$PULUMI_VERSION"
    go env GOVERSION
    (cd "$build_module" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) | LC_ALL=C sort |
      xargs sha256sum)
  } | sha256sum | cut -d' ' -f1
}

installed_ok() {
  [[ -x "$bin_dir/pulumi" && -x "$bin_dir/pulumi-language-nodejs" && -x "$bin_dir/pulumi-resource-pulumi-nodejs" ]] &&
    [[ "$(cat "$install_root/build-stamp" 2>/dev/null)" == "$stamp" ]] &&
    [[ "$("$bin_dir/pulumi" version 2>/dev/null)" == "$PULUMI_VERSION" ]]
}

if ! command -v go >/dev/null 2>&1; then
  say "error: the go toolchain is needed to build the Pulumi engine (go 1.25 or newer)"
  exit 1
fi

# -mod=mod: go.mod/go.sum are complete, this only lets go fill the module cache on a fresh machine.
# -buildvcs=false: the wrapper module sits inside this repo; its git state is not the engine's version.
export GOFLAGS="-mod=mod -buildvcs=false"
# pkg/v3 v3.248.0 is missing from the public checksum database (lookups answer 404); its hash is pinned in
# pulumi-build/go.sum instead, which go checks the download against.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/pulumi/pulumi/pkg/v3"

mkdir -p "$install_root"
stamp="$(build_stamp)"

# Serialise concurrent runs (e.g. two test jobs) on the same cache dir.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$install_root/.lock"
  flock 9
fi

if installed_ok; then
  say "using cached Pulumi $PULUMI_VERSION in $bin_dir"
  echo "$bin_dir"
  exit 0
fi

say "building Pulumi $PULUMI_VERSION from Go modules: about 12 minutes on 2 cores the first time, seconds afterwards"
say "(downloads go through the Go module proxy unless the module cache has them); log: $log_file"
staging="$(mktemp -d "$install_root/staging.XXXXXX")"
ticker=""
trap '[[ -n $ticker ]] && kill "$ticker" 2>/dev/null; rm -rf "$staging"' EXIT
: >"$log_file"
started=$SECONDS

# What go is doing right now, from the log (go build -v prints each package it compiles).
activity() {
  local downloads compiled last
  downloads="$(grep -c '^go: downloading' "$log_file" || true)"
  compiled="$(grep -vc '^go: ' "$log_file" || true)"
  last="$(tail -n 1 "$log_file" | cut -c1-90)"
  echo "$downloads modules downloaded, $compiled packages compiled${last:+; last: $last}"
}

# A line every PROGRESS_SECONDS while a step runs: how long the whole build has run and what go is doing.
tick() {
  local what="$1" nap=""
  # sleep in the background so that the kill at the end of the step also ends the sleep at once.
  trap '[[ -n $nap ]] && kill "$nap" 2>/dev/null; exit 0' TERM
  while :; do
    sleep "${PROGRESS_SECONDS:-20}" &
    nap=$!
    wait "$nap"
    say "$what: $(((SECONDS - started) / 60))m$(((SECONDS - started) % 60))s so far ($(activity))"
  done
}

build() {
  local what="$1" step_started=$SECONDS
  shift
  say "$what"
  tick "$what" >&2 &
  ticker=$!
  (cd "$build_module" && go build -v -trimpath "$@") >>"$log_file" 2>&1 || {
    kill "$ticker" 2>/dev/null
    say "error: go build $* failed; last lines of $log_file:"
    tail -n 40 "$log_file" >&2
    exit 1
  }
  kill "$ticker" 2>/dev/null
  wait "$ticker" 2>/dev/null || true
  ticker=""
  say "$what: done in $((SECONDS - step_started))s"
}

build "step 1/2: compiling the pulumi CLI (the long one)" \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
  -o "$staging/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
build "step 2/2: compiling the Node.js language host" \
  -ldflags "-s -w -X main.version=${PULUMI_VERSION#v}" \
  -o "$staging/pulumi-language-nodejs" ./cmd/pulumi-language-nodejs

# The dynamic-provider plugin is a small shell script that ships in the sdk/v3 module (nodejs/dist/).
sdk_dir="$(cd "$build_module" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
for shim in "$sdk_dir"/nodejs/dist/pulumi-*; do
  [[ "$shim" == *.cmd ]] && continue # Windows variants
  cp "$shim" "$staging/"
  chmod 0755 "$staging/$(basename "$shim")"
done

built_version="$("$staging/pulumi" version)"
if [[ "$built_version" != "$PULUMI_VERSION" ]]; then
  say "error: built pulumi reports '$built_version', expected $PULUMI_VERSION"
  exit 1
fi

mkdir -p "$bin_dir"
for file in "$staging"/*; do
  mv -f "$file" "$bin_dir/" # rename: a pulumi already running keeps its old inode
done
echo "$stamp" >"$install_root/build-stamp"
say "built Pulumi $PULUMI_VERSION in $((SECONDS - started))s into $bin_dir"
echo "$bin_dir"
