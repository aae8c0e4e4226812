#!/usr/bin/env bash
# Starts procmesh end to end on its embedded defaults for `make run`: the
# built-in CA, a demo mTLS upstream (procmesh-echo) and a config that gives
# curl its own SPIFFE ID. Stops everything on Ctrl-C.
#
# Overridable for the end-to-end test: PROCMESH_RUN_DIR (default .run),
# PROCMESH_BIN (default bin), ECHO_HTTP_ADDR, ECHO_TCP_ADDR.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="${PROCMESH_RUN_DIR:-$PWD/.run}"
BIN="${PROCMESH_BIN:-$PWD/bin}"
HTTP_ADDR="${ECHO_HTTP_ADDR:-127.0.0.1:18443}"
TCP_ADDR="${ECHO_TCP_ADDR:-127.0.0.1:18444}"
mkdir -p "$RUN"
chmod 0755 "$RUN"
if ! command -v curl >/dev/null; then
  echo "dev-run: curl is not installed; installing it with apt-get" >&2
  apt-get update -qq && apt-get install -y -qq curl >/dev/null
fi
CURL=$(readlink -f "$(command -v curl)")
sed -e "s#@RUN@#$RUN#g" -e "s#@CURL@#$CURL#g" -e "s#@HTTP_ADDR@#$HTTP_ADDR#g" -e "s#@TCP_ADDR@#$TCP_ADDR#g" configs/dev.yaml.in > "$RUN/procmesh.yaml"
"$BIN/procmesh" check -config "$RUN/procmesh.yaml"
"$BIN/procmesh" ca bundle -config "$RUN/procmesh.yaml" > "$RUN/procmesh-bundle.pem"

rm -f "$RUN/upstream-bundle.pem"
"$BIN/procmesh-echo" -state "$RUN/echo" -trust-domain upstream.test -id spiffe://upstream.test/echo \
  -client-bundle "example.org=$RUN/procmesh-bundle.pem" -bundle-out "$RUN/upstream-bundle.pem" \
  -http "$HTTP_ADDR" -tcp "$TCP_ADDR" 2> "$RUN/echo.log" &
ECHO_PID=$!
trap 'kill $ECHO_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [ -s "$RUN/upstream-bundle.pem" ] && break
  kill -0 $ECHO_PID 2>/dev/null || { cat "$RUN/echo.log" >&2; exit 1; }
  sleep 0.1
done

cat <<MSG

procmesh is starting with the built-in CA in $RUN/state.
In another terminal, call the demo upstream as curl's own identity:

  curl --unix-socket $RUN/egress.sock http://echo.test/hello

The answer names spiffe://example.org/demo/curl: the upstream saw curl, not a
sidecar. A process that is not curl is refused with the selectors it has:

  python3 -c 'import socket;s=socket.socket(socket.AF_UNIX);s.connect("$RUN/egress.sock");s.send(b"GET / HTTP/1.1\r\nHost: echo.test\r\n\r\n");print(s.recv(4096).decode())'

The per-route socket $RUN/echo-raw.sock carries raw bytes to the
demo's TCP echo (it names the caller's SPIFFE ID, then echoes). Only
registered programs get through: add a workloads entry with your client's
unix:path to $RUN/procmesh.yaml and restart to try it.

Audit lines follow below (JSON). Ctrl-C stops procmesh and the demo upstream.

MSG
"$BIN/procmesh" run -config "$RUN/procmesh.yaml"
