#!/usr/bin/env bash
# The runbook's Step 2 for a locally built kiloclaw image: version, Node, directories,
# `openclaw doctor`, startup, gateway, runtime config, image size. The ImageValidation
# component runs this via @pulumi/command; the checks live in validation/ (TypeScript,
# see validation/cli.ts for the environment it reads and its exit codes).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# tsx keeps its transpile cache under $TMPDIR: point that at our cache dir, not the caller's temp dir.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/kiloclaw-rollout"
mkdir -p "$cache"
# exec: signals reach the validation directly, which removes its containers before exiting.
TMPDIR="$cache" exec node --require tsx/cjs validation/cli.ts
