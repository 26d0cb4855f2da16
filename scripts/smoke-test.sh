#!/usr/bin/env bash
# The runbook's Step 2 for a locally built kiloclaw image: version, Node, directories,
# `openclaw doctor`, startup, gateway, runtime config, image size. The ImageValidation
# component runs this via @pulumi/command; the checks live in validation/ (TypeScript,
# see validation/cli.ts for the environment it reads and its exit codes).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# exec: signals reach the validation directly, which removes its containers before exiting.
exec node --require tsx/cjs validation/cli.ts
