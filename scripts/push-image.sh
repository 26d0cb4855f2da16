#!/usr/bin/env bash
# Tags a local image and pushes it to a registry (registry.fly.io in real use),
# the runbook's Step 3 without the lasting `fly auth docker` login: the login
# lives in a private, temporary DOCKER_CONFIG that is deleted on every exit, so
# no credential is left in ~/.docker/config.json or a credential helper.
#
# Env:   SOURCE_IMAGE       local image (reference or id)
#        TARGET_IMAGE       REGISTRY_SERVER/repo:tag
#        REGISTRY_SERVER    e.g. registry.fly.io or 127.0.0.1:5055
#        REGISTRY_USERNAME  (x; Fly ignores the user and checks the token)
# Stdin: the registry password / Fly API token (never argv, never env).
# Stdout: progress, then the pushed manifest digest `sha256:...` as the LAST line.
# Fails (exit 1) when the registry does not serve the tag for linux/amd64 (Fly runs nothing else).
set -euo pipefail

die() { echo "push-image: $*" >&2; exit 1; }

SOURCE_IMAGE="${SOURCE_IMAGE:-}"
TARGET_IMAGE="${TARGET_IMAGE:-}"
REGISTRY_SERVER="${REGISTRY_SERVER:-}"
REGISTRY_USERNAME="${REGISTRY_USERNAME:-x}"
[[ -n $SOURCE_IMAGE ]] || die "SOURCE_IMAGE is required"
[[ -n $TARGET_IMAGE ]] || die "TARGET_IMAGE is required"
[[ -n $REGISTRY_SERVER ]] || die "REGISTRY_SERVER is required"
[[ $TARGET_IMAGE == "$REGISTRY_SERVER/"* ]] ||
  die "TARGET_IMAGE '$TARGET_IMAGE' is not under REGISTRY_SERVER '$REGISTRY_SERVER'"
[[ ! -t 0 ]] || die "the registry token must come on stdin (e.g. 'fly auth token | $0'), not from a terminal"

# Read the token before anything else; strip the trailing newline(s) of `echo`.
token="$(cat)"
token="${token%$'\n'}"
token="${token%$'\r'}"
[[ -n $token ]] || die "no registry token on stdin"

docker info >/dev/null 2>&1 || die "Docker is not running: run bootstrap/start-docker.sh"
docker image inspect "$SOURCE_IMAGE" >/dev/null 2>&1 || die "SOURCE_IMAGE '$SOURCE_IMAGE' is not in the local Docker engine"

# Private docker config: the login below is written here and nowhere else.
DOCKER_CONFIG="$(mktemp -d "${TMPDIR:-/tmp}/kiloclaw-docker-config.XXXXXX")"
export DOCKER_CONFIG
# The pushed name (<registry>/<app>:<tag>) is not one stack's alone: the tag this script adds is
# removed again on every exit, so the engine keeps only the stack's own name for the image.
tagged=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -z $tagged ]] || docker rmi "$TARGET_IMAGE" >/dev/null 2>&1 || true
  rm -rf "$DOCKER_CONFIG"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# With no auth in config.json the CLI would pick the platform's credential helper
# (osxkeychain, wincred, pass...) and store the login there, outliving this run.
# A placeholder auth entry makes it use this file only.
printf '{"auths":{"kiloclaw-rollout.invalid":{}}}\n' >"$DOCKER_CONFIG/config.json"
chmod 600 "$DOCKER_CONFIG/config.json"

auth_refused() {
  cat >&2 <<EOF
✘ push-image: the Fly token was refused by $REGISTRY_SERVER (user $REGISTRY_USERNAME, unauthorized).
  Get a fresh token with \`fly auth token\` and store it with
  \`pulumi config set --secret kiloclaw:flyApiToken\`; it must have access to the target
  app. (A login made by hand with \`fly auth docker\` expires: re-run it when pushing by hand.)
EOF
  exit 1
}
tls_failed() {
  echo "✘ push-image: the TLS connection to registry $REGISTRY_SERVER failed: $1" >&2
  echo "  Check the server name is the registry's HTTPS address (a local registry without TLS must be in Docker's insecure-registries); the token was not tried." >&2
  exit 1
}
unreachable() {
  echo "✘ push-image: registry $REGISTRY_SERVER is unreachable: $1" >&2
  echo "  Check the server name and your network (for Fly: registry.fly.io), then retry." >&2
  exit 1
}
name_unknown() {
  local repo="${TARGET_IMAGE#"$REGISTRY_SERVER/"}"
  repo="${repo%%[:@]*}"
  cat >&2 <<EOF
✘ push-image: $REGISTRY_SERVER does not know the repository '$repo' (NAME_UNKNOWN).
  For Fly, each app has its own registry at registry.fly.io/<app>: make sure the app
  '$repo' exists and the token can reach it (re-run \`fly auth docker\` and try again).
EOF
  exit 1
}
# Sort a docker error into the messages above; otherwise show it as is.
explain_failure() {
  local what=$1 file=$2 text
  text="$(cat "$file")"
  shopt -s nocasematch
  # The cause from docker's error, network and TLS first: a registry that is down is not a refused token.
  if [[ $text == *"x509:"* || $text == *"tls:"* || $text == *"certificate"* || $text == *"server gave HTTP response to HTTPS client"* ]]; then
    shopt -u nocasematch; tls_failed "$(tail -n 1 "$file")"
  elif [[ $text == *"connection refused"* || $text == *"no such host"* || $text == *"i/o timeout"* || $text == *"network is unreachable"* || $text == *"server misbehaving"* ]]; then
    shopt -u nocasematch; unreachable "$(tail -n 1 "$file")"
  elif [[ $text == *"unauthorized"* || $text == *"incorrect username or password"* || $text == *"authentication required"* || $text == *" 401 "* || $text == *"denied"* ]]; then
    shopt -u nocasematch; auth_refused
  elif [[ $text == *"NAME_UNKNOWN"* || $text == *"name unknown"* || $text == *"repository name not known"* ]]; then
    shopt -u nocasematch; name_unknown
  elif [[ $text == *"connection refused"* || $text == *"no such host"* || $text == *"i/o timeout"* || $text == *"dial tcp"* || $text == *"timeout"* || $text == *"network is unreachable"* || $text == *"server misbehaving"* ]]; then
    shopt -u nocasematch; unreachable "$(tail -n 1 "$file")"
  fi
  shopt -u nocasematch
  echo "✘ push-image: $what failed:" >&2
  sed 's/^/    | /' "$file" | tail -n 20 >&2
  exit 1
}

out="$DOCKER_CONFIG/out.txt"

docker image inspect "$TARGET_IMAGE" >/dev/null 2>&1 || tagged=1
docker tag "$SOURCE_IMAGE" "$TARGET_IMAGE"
echo "push-image: tagged $SOURCE_IMAGE as $TARGET_IMAGE"

# --password-stdin keeps the token out of argv; docker's own messages go to $out.
if ! printf '%s' "$token" | docker login --username "$REGISTRY_USERNAME" --password-stdin "$REGISTRY_SERVER" >"$out" 2>&1; then
  explain_failure "docker login $REGISTRY_SERVER" "$out"
fi
echo "push-image: logged in to $REGISTRY_SERVER (temporary config)"

if ! docker push "$TARGET_IMAGE" >"$out" 2>&1; then
  explain_failure "docker push $TARGET_IMAGE" "$out"
fi
# Push progress on stderr, so stdout stays progress lines + the digest.
sed 's/^/    | /' "$out" >&2

# `docker push` ends with "<tag>: digest: sha256:<64 hex> size: <n>".
digest="$(sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p' "$out" | tail -n 1)"
if [[ -z $digest ]]; then
  # Fallback: the engine records the digest it pushed for this repository.
  repo="${TARGET_IMAGE%@*}"
  # Drop a ":tag", but not the ":port" of the registry host.
  [[ ${repo##*:} == */* ]] || repo="${repo%:*}"
  digest="$(docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$TARGET_IMAGE" |
    sed -n "s#^$repo@\(sha256:[0-9a-f]\{64\}\)\$#\1#p" | head -n 1)"
fi
[[ -n $digest ]] || die "pushed $TARGET_IMAGE but could not find its digest in docker's output"
echo "push-image: pushed $TARGET_IMAGE"

# The runbook's Step 3 check, with the login above: the registry serves the tag as
# linux/amd64, the only platform Fly machines run. (--insecure: a local http registry.)
insecure=()
[[ $REGISTRY_SERVER == 127.0.0.1:* || $REGISTRY_SERVER == localhost:* ]] && insecure=(--insecure)
if ! docker manifest inspect "${insecure[@]}" --verbose "$TARGET_IMAGE" >"$out" 2>&1; then
  explain_failure "docker manifest inspect $TARGET_IMAGE" "$out"
fi
# One entry per platform (a manifest list gives an array); "os/architecture" each.
platforms="$(node -e '
  const d = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const p = (Array.isArray(d) ? d : [d]).map((e) => e.Descriptor && e.Descriptor.platform);
  console.log(p.map((x) => (x ? `${x.os}/${x.architecture}` : "unknown")).join(" "));
' <"$out")" || die "docker manifest inspect $TARGET_IMAGE printed no manifest JSON"
if [[ " $platforms " != *" linux/amd64 "* ]]; then
  cat >&2 <<EOF
✘ push-image: the registry serves $TARGET_IMAGE for ${platforms:-no platform}, but Fly machines run linux/amd64.
  Rebuild for linux/amd64 (\`docker build --platform linux/amd64 …\`, as the KiloclawImage component does), then
  run \`pulumi up\` again; nothing was pointed at this tag.
EOF
  exit 1
fi
echo "push-image: the registry serves $TARGET_IMAGE for linux/amd64"
echo "$digest"
