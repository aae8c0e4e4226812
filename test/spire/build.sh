#!/usr/bin/env bash
# Builds the real SPIRE server and agent that procmesh's SPIRE tests run
# against, from this module's `tool` directives (go.mod pins SPIRE and every
# dependency; go.sum verifies them), into a cache directory outside the tree:
#
#   $PROCMESH_SPIRE_BIN  (default: ${XDG_CACHE_HOME:-$HOME/.cache}/procmesh-spire/<version>-<go.sum hash>)
#
# It builds only when a binary is missing: a cold build takes about 7 minutes
# on 2 cores, a warm one is a no-op. It prints the directory on its last line.
# SPIRE stays out of procmesh's own module: this is a separate module.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
version="$(awk '$1 == "github.com/spiffe/spire" {print $2}' go.mod)"
[ -n "$version" ] || { echo "test/spire/go.mod does not require github.com/spiffe/spire" >&2; exit 1; }
sum="$(sha256sum go.sum | cut -c1-12)"
dir="${PROCMESH_SPIRE_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/procmesh-spire/$version-$sum}"
if [ -x "$dir/spire-server" ] && [ -x "$dir/spire-agent" ]; then
  echo "$dir"
  exit 0
fi
# sqlite3 (the server's datastore in the tests) needs cgo.
command -v "${CC:-gcc}" >/dev/null || { echo "building SPIRE needs a C compiler (sqlite3): apt-get install -y gcc" >&2; exit 1; }
mkdir -p "$(dirname "$dir")"
tmp="$(mktemp -d "$dir.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "building SPIRE $version into $dir (cold: about 7 minutes on 2 cores)" >&2
start=$(date +%s)
CGO_ENABLED=1 GOFLAGS=-buildvcs=false go build -trimpath -ldflags='-s -w' -o "$tmp/" \
  github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "built SPIRE $version in $(( $(date +%s) - start ))s" >&2
echo "$dir"
