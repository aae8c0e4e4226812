#!/usr/bin/env bash
# Installs HAProxy from Debian's packages when it is missing: the sidecar
# that `make demo-attack` (and its test, cmd/procmesh-demo) compares procmesh
# with. As bench/install.sh does, without letting the package start its own
# daemon.
set -euo pipefail
command -v haproxy >/dev/null && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "demo: HAProxy is missing; run as root or install it: apt-get install -y haproxy" >&2
  exit 1
fi
echo "demo: installing haproxy with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
cleanup() { if [ -n "${made_policy:-}" ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  made_policy=1
fi
apt-get install -y -qq --no-install-recommends haproxy >/dev/null
