#!/usr/bin/env bash
# Builds the real SPIRE server and agent that procmesh's SPIRE tests run
# against, from this module's `tool` directives (go.mod pins SPIRE and every
# dependency; go.sum verifies them), into a cache directory outside the tree:
#
#   $PROCMESH_SPIRE_BIN  (default: ${XDG_CACHE_HOME:-$HOME/.cache}/procmesh-spire/<version>-<hash of go.sum, this script and prune/main.go>)
#
# It builds only when a binary is missing: a cold build takes about 2
# CPU-minutes (see the plugins and flags below), a warm one is a no-op.
# It prints the directory on its last line.
# SPIRE stays out of procmesh's own module: this is a separate module.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
version="$(awk '$1 == "github.com/spiffe/spire" {print $2}' go.mod)"
[ -n "$version" ] || { echo "test/spire/go.mod does not require github.com/spiffe/spire" >&2; exit 1; }
# The directory's name changes with the pinned modules and with this script
# (its build flags and the plugins it keeps) and with prune/main.go.
sum="$(cat go.sum build.sh prune/main.go | sha256sum | cut -c1-12)"
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
echo "building SPIRE $version into $dir (about a minute on 2 cores)" >&2
start=$(date +%s)
# The tests run SPIRE's own server and agent with the plugins below (the
# configs are in internal/spiretest). The other built-in plugins are left
# out of a copy of SPIRE's source: they import the AWS, GCP, Azure,
# Kubernetes, Vault and Docker SDKs, more than half of the 2,342 packages of
# a full build. prune/main.go edits only the catalogs' BuiltIns lists; the
# copy is built through a go.mod that replaces SPIRE with it and pins every
# other module as go.mod and go.sum here do.
keep=server/keymanager/disk,server/keymanager/memory,server/nodeattestor/jointoken
keep=$keep,agent/keymanager/disk,agent/keymanager/memory,agent/nodeattestor/jointoken,agent/workloadattestor/unix
go mod download github.com/spiffe/spire
srcdir="$(go list -m -f '{{.Dir}}' github.com/spiffe/spire)"
[ -d "$srcdir" ] || { echo "github.com/spiffe/spire@$version has no source directory after go mod download" >&2; exit 1; }
cp -r "$srcdir" "$tmp/src"
chmod -R u+w "$tmp/src"
go run ./prune -keep "$keep" "$tmp/src"
mkdir "$tmp/mod"
cp go.mod go.sum "$tmp/mod/"
echo "replace github.com/spiffe/spire => $tmp/src" >> "$tmp/mod/go.mod"
# The tests need SPIRE's behaviour, not its speed: its packages are
# compiled without optimisation or inlining (-N -l) and sqlite3's C without
# optimisation (-O0), which took about 40% less CPU than the default build
# here (924 against 1,513 CPU-seconds, both on a loaded machine).
mkdir "$tmp/bin"
CGO_ENABLED=1 CGO_CFLAGS="-O0 -g0" GOFLAGS=-buildvcs=false go build -modfile="$tmp/mod/go.mod" -trimpath -ldflags='-s -w' -gcflags='all=-N -l' -o "$tmp/bin/" \
  github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
rm -rf "$dir"
mv "$tmp/bin" "$dir"
rm -rf "$tmp"
trap - EXIT
echo "built SPIRE $version in $(( $(date +%s) - start ))s" >&2
echo "$dir"
