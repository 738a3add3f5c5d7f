#!/usr/bin/env bash
# Builds the OCI images Warren's integration tests pull from a local registry, keeps them in a cache,
# and pushes them to a registry. The images mimic the real devcontainer images:
#   devcontainers/base:bookworm              ~ mcr.microsoft.com/devcontainers/base:bookworm (user vscode)
#   devcontainers/javascript-node:20-bookworm ~ mcr.microsoft.com/devcontainers/javascript-node:20-bookworm
#                                              (user node, Debian's nodejs)
#   warren-test/busybox:latest               a 2 MB busybox-static image for fast tests
#
# Usage:
#   scripts/test-images.sh build            build the images unless cached; prints the cache directory
#   scripts/test-images.sh push HOST:PORT   build if needed, then push every image to the (plain HTTP)
#                                           registry; prints "<id> <ref> <manifest digest>" per image
#   scripts/test-images.sh key              prints the cache key
#
# Cache: ${WARREN_TEST_CACHE:-/var/cache/warren-test}/images-<key>/, one OCI layout per image, where <key> is a
# hash of this script (which holds the package lists), so editing it rebuilds and a reused machine skips
# mmdebstrap. Concurrent callers are serialised with flock(1) on <cache>/.lock. Building needs root
# (mmdebstrap's chroot mode) and the Debian mirror (override with WARREN_TEST_DEBIAN_MIRROR).
set -euo pipefail

# ---- what goes into the images (changing anything in this file changes the cache key) ----
SUITE=bookworm
# Packages of the "plain" image, like mcr.microsoft.com/devcontainers/base:bookworm (trimmed down).
BASE_PACKAGES=(bash git sudo curl ca-certificates procps passwd)
# The javascript-node image adds Debian's nodejs (18.x in bookworm; the real image has 20.x from nodejs.org).
NODE_PACKAGES=("${BASE_PACKAGES[@]}" nodejs)
# Fixed timestamps make layers reproducible for the same mirror content.
export SOURCE_DATE_EPOCH=1700000000
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# devcontainer.metadata labels, shaped like the ones on the real images.
BASE_METADATA='[{"id":"ghcr.io/devcontainers/features/common-utils:2"},{"id":"ghcr.io/devcontainers/features/git:1"},{"remoteUser":"vscode"}]'
NODE_METADATA='[{"id":"ghcr.io/devcontainers/features/common-utils:2"},{"id":"ghcr.io/devcontainers/features/git:1"},{"customizations":{"vscode":{"extensions":["dbaeumer.vscode-eslint"]}},"remoteUser":"node"}]'

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
CACHE_ROOT=${WARREN_TEST_CACHE:-/var/cache/warren-test}
MIRROR=${WARREN_TEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${WARREN_TEST_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
KEY=$(sha256sum "$SCRIPT_PATH" | cut -c1-16)
CACHE_DIR="$CACHE_ROOT/images-$KEY"
# id, repository, tag: one line per image; the id names the OCI layout directory in the cache.
IMAGES=(
  "base devcontainers/base bookworm"
  "javascript-node devcontainers/javascript-node 20-bookworm"
  "busybox warren-test/busybox latest"
)

log() { printf 'test-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# write_layout LAYOUT TAG LAYER_TAR CONFIG_JSON_FRAGMENT
# Writes an OCI image layout (image-spec v1.0) with one gzip layer made from LAYER_TAR. The fragment is the
# image config's "config" object (Env, Cmd, Labels).
write_layout() {
  local layout=$1 tag=$2 layer_tar=$3 config=$4
  mkdir -p "$layout/blobs/sha256"
  local diff_id blob
  diff_id=$(sha256sum "$layer_tar" | cut -d' ' -f1)
  gzip -n -6 <"$layer_tar" >"$layout/layer.tmp"
  blob=$(sha256sum "$layout/layer.tmp" | cut -d' ' -f1)
  mv "$layout/layer.tmp" "$layout/blobs/sha256/$blob"
  /usr/bin/python3 - "$layout" "$tag" "$diff_id" "$blob" "$config" <<'PY'
import hashlib, json, os, sys
layout, tag, diff_id, blob, config = sys.argv[1:]
def put(obj):
    data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}
created = "2023-11-14T22:13:20Z"  # SOURCE_DATE_EPOCH
cfg = put({
    "architecture": "amd64", "os": "linux", "created": created,
    "config": json.loads(config),
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
    "history": [{"created": created, "created_by": "scripts/test-images.sh"}],
})
layer_size = os.path.getsize(os.path.join(layout, "blobs", "sha256", blob))
manifest = put({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + blob, "size": layer_size}],
})
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
with open(os.path.join(layout, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
PY
}

# config_json USER_METADATA CMD → the image config's "config" object.
config_json() {
  /usr/bin/python3 -c 'import json, sys; print(json.dumps({"Env": ["PATH=" + sys.argv[1]], "Cmd": [sys.argv[3]], "Labels": {"devcontainer.metadata": sys.argv[2]} if sys.argv[2] else {}}))' \
    "$DEFAULT_PATH" "$1" "$2"
}

# debian_rootfs_tar OUT_TAR USER PACKAGE...
# Debian minbase plus PACKAGES, a passwordless-sudo USER (uid/gid 1000, bash, /home/USER) as the devcontainer
# images have, no /dev nodes (the runtime provides /dev), docs/man pages/locales/apt lists trimmed.
debian_rootfs_tar() {
  local out=$1 user=$2; shift 2
  local include; include=$(IFS=,; echo "$*")
  mmdebstrap --quiet --variant=minbase --format=tar --include="$include" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook="chroot \"\$1\" groupadd --gid 1000 $user" \
    --customize-hook="chroot \"\$1\" useradd --uid 1000 --gid 1000 --shell /bin/bash --create-home $user" \
    --customize-hook="echo '$user ALL=(root) NOPASSWD:ALL' > \"\$1/etc/sudoers.d/$user\" && chmod 0440 \"\$1/etc/sudoers.d/$user\"" \
    --customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname" "$1"/var/log/*.log "$1"/var/log/apt/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old' \
    "$SUITE" - \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main" \
    </dev/null | mmtarfilter --path-exclude='/dev/*' >"$out"
}

# busybox_rootfs_tar OUT_TAR WORKDIR: busybox-static with every applet linked, root user, /tmp.
busybox_rootfs_tar() {
  local out=$1 root=$2/busybox-rootfs
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev}
  chmod 1777 "$root/tmp"
  chmod 0700 "$root/root"
  cp /bin/busybox "$root/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list-full); do
    [[ -e "$root/$applet" ]] || ln -s /bin/busybox "$root/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner -C "$root" -cf "$out" .
}

# build: fills $CACHE_DIR unless it is complete. Holds the exclusive cache lock.
build() {
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/.lock"
  flock 9
  if [[ -e "$CACHE_DIR/complete" ]]; then
    echo "$CACHE_DIR"
    return
  fi
  [[ $(id -u) == 0 ]] || die "building the test images needs root (mmdebstrap); cache $CACHE_DIR is missing"
  local cmd
  for cmd in mmdebstrap mmtarfilter busybox gzip /usr/bin/python3; do
    command -v "$cmd" >/dev/null || die "$cmd not found (apt-get install mmdebstrap busybox-static)"
  done
  local started=$SECONDS
  work="$CACHE_DIR.tmp" # global: the EXIT trap needs it
  rm -rf "$work"
  mkdir -p "$work"
  trap 'rm -rf "$work"' EXIT
  log "building into $CACHE_DIR (mmdebstrap, ~1 min)"

  # The two Debian images are independent: build them in parallel.
  debian_rootfs_tar "$work/base.tar" vscode "${BASE_PACKAGES[@]}" 2>"$work/base.log" &
  local base_pid=$!
  debian_rootfs_tar "$work/javascript-node.tar" node "${NODE_PACKAGES[@]}" 2>"$work/javascript-node.log" &
  local node_pid=$!
  busybox_rootfs_tar "$work/busybox.tar" "$work"
  write_layout "$work/busybox" latest "$work/busybox.tar" "$(config_json '' sh)"
  local failed=0
  wait "$base_pid" || { failed=1; log "base image failed:"; cat "$work/base.log" >&2; }
  wait "$node_pid" || { failed=1; log "javascript-node image failed:"; cat "$work/javascript-node.log" >&2; }
  [[ $failed == 0 ]] || die "mmdebstrap failed"
  write_layout "$work/base" bookworm "$work/base.tar" "$(config_json "$BASE_METADATA" bash)" &
  base_pid=$!
  write_layout "$work/javascript-node" 20-bookworm "$work/javascript-node.tar" "$(config_json "$NODE_METADATA" node)"
  wait "$base_pid"
  rm -f "$work"/*.tar "$work"/*.log
  rm -rf "$work/busybox-rootfs"
  printf '%s\n' "${IMAGES[@]}" >"$work/images"
  touch "$work/complete"
  mv "$work" "$CACHE_DIR"
  trap - EXIT
  # Drop layouts built by older versions of this script.
  local old
  for old in "$CACHE_ROOT"/images-*; do
    [[ "$old" == "$CACHE_DIR" ]] || rm -rf "$old"
  done
  log "built in $((SECONDS - started)) s: $(du -sh "$CACHE_DIR" | cut -f1)"
  echo "$CACHE_DIR"
}

# push REGISTRY: pushes every cached image; holds the cache lock shared so no build prunes it meanwhile.
push() {
  local registry=$1
  build >/dev/null
  exec 9>"$CACHE_ROOT/.lock"
  flock -s 9
  [[ -e "$CACHE_DIR/complete" ]] || die "cache $CACHE_DIR vanished"
  local line id repository tag pids=()
  for line in "${IMAGES[@]}"; do
    read -r id repository tag <<<"$line"
    skopeo --insecure-policy copy --quiet --dest-tls-verify=false --digestfile "$CACHE_DIR.$$.$id.digest" \
      "oci:$CACHE_DIR/$id:$tag" "docker://$registry/$repository:$tag" >&2 &
    pids+=($!)
  done
  local pid failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  for line in "${IMAGES[@]}"; do
    read -r id repository tag <<<"$line"
    if [[ $failed == 0 ]]; then
      printf '%s %s %s\n' "$id" "$registry/$repository:$tag" "$(cat "$CACHE_DIR.$$.$id.digest")"
    fi
    rm -f "$CACHE_DIR.$$.$id.digest"
  done
  [[ $failed == 0 ]] || die "skopeo copy to $registry failed"
}

case "${1:-}" in
  build) build ;;
  push) [[ $# == 2 ]] || die "usage: $0 push HOST:PORT"; push "$2" ;;
  key) echo "$KEY" ;;
  *) die "usage: $0 build | push HOST:PORT | key" ;;
esac
