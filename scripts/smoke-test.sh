#!/usr/bin/env bash
# The runbook's Step 2 for a locally built kiloclaw image: version, Node, directories,
# `openclaw doctor`, startup, gateway, runtime config, image size. The ImageValidation
# component runs this via @pulumi/command; the checks live in validation/ (TypeScript,
# see validation/cli.ts for the environment it reads and its exit codes).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Node runs validation/ as JavaScript transpiled once per version of its sources and kept in
# the cache dir: a TypeScript loader would add ~0.3 s to every run, and the run is timed
# against the gateway's own boot (npm run bench).
cache="${XDG_CACHE_HOME:-$HOME/.cache}/kiloclaw-rollout"
hash="$(cat "$repo"/validation/*.ts | sha256sum | cut -c1-16)"
out="$cache/validation-$hash"
if [[ ! -f $out/cli.js ]]; then
  mkdir -p "$cache"
  staging="$(mktemp -d "$cache/validation-staging.XXXXXX")"
  trap 'rm -rf "$staging"' EXIT
  (cd "$repo" && node -e '
    const fs = require("fs"), path = require("path"), ts = require("typescript");
    const options = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
    for (const file of fs.readdirSync("validation").filter((f) => f.endsWith(".ts"))) {
      const js = ts.transpileModule(fs.readFileSync(path.join("validation", file), "utf8"), { compilerOptions: options, fileName: file });
      fs.writeFileSync(path.join(process.argv[1], file.replace(/\.ts$/, ".js")), js.outputText);
    }' "$staging") || { echo "smoke-test: could not transpile validation/ (is typescript installed? run npm ci)" >&2; exit 2; }
  # Another run may have finished the same version meanwhile: the first rename wins.
  mv -T "$staging" "$out" 2>/dev/null || rm -rf "$staging"
  trap - EXIT
  # Versions nobody ran for a day (another checkout may still use a recent one).
  find "$cache" -maxdepth 1 -name 'validation-[0-9a-f]*' ! -name "${out##*/}" -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
fi
touch "$out" # in use: not pruned for another day

# The whole run's deadline, derived from the checks' own (validation/validate.ts overallDeadlineSeconds, ×3 because
# an emulated engine lengthens them and only the validation can tell): the validation enforces it itself; `timeout`
# is the backstop for a validation that cannot (exit 124: TERM at the deadline, KILL 5 s later; the next run sweeps
# up after a KILL). @pulumi/command 1.2.1's local.Command has no timeout of its own.
whole() { [[ ${1:-} =~ ^[1-9][0-9]{0,5}$ ]] && echo "$1" || echo "$2"; }
startup=$(whole "${STARTUP_DEADLINE_SECONDS:-}" 60)
doctor=$(whole "${DOCTOR_DEADLINE_SECONDS:-}" "$startup")
overall=$((3 * ($(whole "${GATEWAY_DEADLINE_SECONDS:-}" 90) + (startup > doctor ? startup : doctor)) + 30))
# exec: signals reach timeout, which passes them on to the validation; it removes its containers before exiting.
if command -v timeout >/dev/null 2>&1; then
  exec timeout --kill-after=5 "$overall" node "$out/cli.js"
fi
exec node "$out/cli.js"
