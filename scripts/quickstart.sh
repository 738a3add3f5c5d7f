#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine (as root): installs what Warren needs, starts Warren with
# `warren up`, and runs its main job: create a development environment from a git repository whose
# .devcontainer/devcontainer.json names mcr.microsoft.com/devcontainers/base:bookworm, then run a command in it.
#
# This machine kind has no internet beyond the Debian and npm registries, so the script also provides what the
# internet would: devcontainer-like images built with mmdebstrap (scripts/test-images.sh, cached), a local
# registry on 127.0.0.1:5000 that the runner uses as a mirror of mcr.microsoft.com, and a git daemon on
# 127.0.0.1:9418 serving a sample repository. Idempotent: run it again to reuse everything.
#
# Environment: WARREN_DATA_DIR (default /var/lib/warren), WARREN_DEMO_DIR (default /var/lib/warren-demo).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA_DIR=${WARREN_DATA_DIR:-/var/lib/warren}
DEMO_DIR=${WARREN_DEMO_DIR:-/var/lib/warren-demo}
REGISTRY=127.0.0.1:5000
API=127.0.0.1:7080

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'quickstart: error: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root: Warren's runner creates namespaces, mounts and cgroups"
cd "$ROOT"

say "installing system packages, npm dependencies and test images (.ci/run --setup-only)"
.ci/run --setup-only

say "building Warren"
npm run build --silent
ln -sf "$ROOT/packages/cli/bin/warren.js" /usr/local/bin/warren
mkdir -p "$DEMO_DIR"

say "local registry on $REGISTRY (mirror of mcr.microsoft.com)"
if ! curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; then
  mkdir -p "$DEMO_DIR/registry"
  cat >"$DEMO_DIR/registry.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $DEMO_DIR/registry
http:
  addr: $REGISTRY
YAML
  nohup docker-registry serve "$DEMO_DIR/registry.yml" >"$DEMO_DIR/registry.log" 2>&1 &
  for _ in $(seq 1 50); do curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && break; sleep 0.2; done
fi
scripts/test-images.sh push "$REGISTRY"

say "sample repository on git://127.0.0.1:9418/hello.git"
if [[ ! -d "$DEMO_DIR/git/hello.git" ]]; then
  work=$(mktemp -d)
  mkdir -p "$work/.devcontainer"
  cat >"$work/.devcontainer/devcontainer.json" <<'JSON'
// A real-world devcontainer.json: Warren pulls the image through the configured mirror.
{
  "name": "hello",
  "image": "mcr.microsoft.com/devcontainers/base:bookworm",
  "containerEnv": { "GREETING": "hello from Warren" },
  "remoteEnv": { "EDITOR": "vi" },
  "postCreateCommand": "echo created > /tmp/post-create-ran",
  "postStartCommand": "echo started",
}
JSON
  echo '# hello' >"$work/README.md"
  git -C "$work" init -q -b main
  git -C "$work" -c user.name=warren -c user.email=warren@localhost add -A
  git -C "$work" -c user.name=warren -c user.email=warren@localhost commit -q -m "hello"
  mkdir -p "$DEMO_DIR/git"
  git clone -q --bare "$work" "$DEMO_DIR/git/hello.git"
  rm -rf "$work"
fi
if ! { [[ -f "$DEMO_DIR/git-daemon.pid" ]] && kill -0 "$(cat "$DEMO_DIR/git-daemon.pid")" 2>/dev/null; }; then
  # Ours is not running; anything else on the port would serve other repositories, so say so instead.
  if (exec 3<>/dev/tcp/127.0.0.1/9418) 2>/dev/null; then die "port 9418 is taken by another git daemon; stop it and run again"; fi
  git daemon --reuseaddr --export-all --base-path="$DEMO_DIR/git" --listen=127.0.0.1 --port=9418 \
    --detach --pid-file="$DEMO_DIR/git-daemon.pid"
fi

say "runner configuration: $DATA_DIR/runner/runner.json"
mkdir -p "$DATA_DIR/runner"
cat >"$DATA_DIR/runner/runner.json" <<JSON
{ "mirrors": { "mcr.microsoft.com": ["$REGISTRY"] } }
JSON

say "warren up (log: $DEMO_DIR/warren.log)"
if ! curl -fsS "http://$API/healthz" >/dev/null 2>&1; then
  nohup warren up --data-dir "$DATA_DIR" --listen "$API" >"$DEMO_DIR/warren.log" 2>&1 &
  echo $! >"$DEMO_DIR/warren.pid"
  for _ in $(seq 1 100); do
    grep -q 'Warren is up' "$DEMO_DIR/warren.log" 2>/dev/null && break
    kill -0 "$(cat "$DEMO_DIR/warren.pid")" 2>/dev/null || { cat "$DEMO_DIR/warren.log" >&2; die "warren up exited"; }
    sleep 0.2
  done
fi
grep 'Warren is up' "$DEMO_DIR/warren.log" || die "warren up did not come up; see $DEMO_DIR/warren.log"

say "warren env create git://127.0.0.1:9418/hello.git --name hello --wait"
if ! warren env get hello >/dev/null 2>&1; then
  warren env create git://127.0.0.1:9418/hello.git --name hello --wait
else
  warren env start hello --wait
fi

say "warren env exec hello -- ..."
warren env exec hello -- bash -c 'echo "user=$(whoami) dir=$(pwd) GREETING=$GREETING"; ls; cat /tmp/post-create-ran'
warren env list
printf '\nWarren is running (pid %s). Try: warren env exec hello -- bash -l; warren env stop hello; warren env delete hello\n' "$(cat "$DEMO_DIR/warren.pid" 2>/dev/null || echo '?')"
