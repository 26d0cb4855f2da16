#!/usr/bin/env bash
# Runs every suite the project has, in order, and closes with one line
# "tests: N passed, N failed". Needs Docker and, for the end-to-end suite, a
# `pulumi` CLI: it starts dockerd (bootstrap/start-docker.sh) and builds the CLI
# (bootstrap/install-pulumi.sh) when they are missing.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# A Debian machine (root) gets the packages the suites need; ci-deps.sh does nothing when all are there.
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  bash bootstrap/ci-deps.sh
else
  for tool in docker dockerd docker-registry htpasswd curl busybox; do
    command -v "$tool" >/dev/null || echo "=== missing $tool: install Docker, docker-registry, htpasswd (apache2-utils), curl and busybox-static" >&2
  done
fi
bash bootstrap/start-docker.sh || echo "=== no Docker engine: the Docker suites will fail (see above)" >&2
if ! command -v pulumi >/dev/null && command -v go >/dev/null; then
  echo "=== no pulumi CLI on PATH: building one from Go modules (bootstrap/install-pulumi.sh, progress below)"
  PATH="$(bash bootstrap/install-pulumi.sh | tail -1):$PATH"
  export PATH
fi
# The S3 backend test runs on MinIO, built from its Go module once and cached (progress on stderr).
if command -v go >/dev/null; then
  bash bootstrap/install-minio.sh >/dev/null || echo "=== MinIO could not be built: the S3 backend test will fail (see above)" >&2
fi

passed=0
failed=0
status=0
# CI shows only the tail of the output: the failing tests' titles and first lines are repeated at the end.
failures="$(mktemp)"
trap 'rm -f "$failures"' EXIT
run_suite() {
  local name="$1"; shift
  local log
  log="$(mktemp)"
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local p f
  p="$(grep -Eo '^ *[0-9]+ passing' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)"
  f="$(grep -Eo '^ *[0-9]+ failing' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)"
  # A check without mocha's summary (typecheck, lint, format) is one test; a suite that died before its summary is one failure.
  if [[ $rc -eq 0 && $p -eq 0 && $f -eq 0 ]]; then p=1; fi
  if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi
  passed=$((passed + p))
  failed=$((failed + f))
  if [[ $rc -ne 0 ]]; then
    status=1
    echo "=== $name: FAILED (exit $rc): $p passed, $f failed"
    {
      echo "--- $name (exit $rc):"
      # mocha's report of each failure starts at "N failing"; a check without one shows its last lines.
      if grep -Eq '^ *[0-9]+ failing' "$log"; then
        sed -n '/^ *[0-9][0-9]* failing/,$p' "$log" | grep -Ev '^ +at ' | head -60
      else
        tail -15 "$log"
      fi
    } >>"$failures"
  else
    echo "=== $name: ok: $p passed, $f failed"
  fi
  rm -f "$log"
}

run_suite typecheck npx tsc --noEmit
run_suite lint npm run --silent lint
run_suite format npm run --silent format:check
run_suite unit npx mocha
run_suite integration npx mocha --config test/integration/.mocharc.json
run_suite faults npx mocha --config test/faults/.mocharc.json
if command -v pulumi >/dev/null; then
  run_suite e2e npx mocha --config test/e2e/.mocharc.json
else
  echo "=== e2e: no pulumi CLI on PATH (bootstrap/install-pulumi.sh builds one): FAILED"
  failed=$((failed + 1))
  status=1
fi

if [[ -s $failures ]]; then
  echo "=== what failed (repeated from above):"
  cat "$failures"
fi
echo "tests: ${passed} passed, ${failed} failed"
exit $status
