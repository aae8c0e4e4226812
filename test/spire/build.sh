#!/usr/bin/env bash
# Builds the real SPIRE server and agent that procmesh's SPIRE tests run
# against, from this module's `tool` directives (go.mod pins SPIRE and every
# dependency; go.sum verifies them), into a cache directory outside the tree:
#
#   $PROCMESH_SPIRE_BIN  (default: ${XDG_CACHE_HOME:-$HOME/.cache}/procmesh-spire/<version>-<hash of go.sum and this script>)
#
# It builds only when a binary is missing: a cold build takes minutes on 2
# cores (see the flags below), a warm one is a no-op. It prints the directory on its last line.
# SPIRE stays out of procmesh's own module: this is a separate module.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
version="$(awk '$1 == "github.com/spiffe/spire" {print $2}' go.mod)"
[ -n "$version" ] || { echo "test/spire/go.mod does not require github.com/spiffe/spire" >&2; exit 1; }
# The directory's name changes with the pinned modules and with this script
# (its build flags).
sum="$(cat go.sum build.sh | sha256sum | cut -c1-12)"
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
echo "building SPIRE $version into $dir (a few minutes on 2 cores)" >&2
start=$(date +%s)
# The tests need SPIRE's behaviour, not its speed: its 2,300 packages are
# compiled without optimisation or inlining (-N -l) and sqlite3's C without
# optimisation (-O0), which took about 40% less CPU than the default build
# here (924 against 1,513 CPU-seconds, both on a loaded machine). That is
# most of what keeps a cold CI run within its time.
CGO_ENABLED=1 CGO_CFLAGS="-O0 -g0" GOFLAGS=-buildvcs=false go build -trimpath -ldflags='-s -w' -gcflags='all=-N -l' -o "$tmp/" \
  github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "built SPIRE $version in $(( $(date +%s) - start ))s" >&2
echo "$dir"
