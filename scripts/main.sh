#!/usr/bin/env bash
# The main job: install devalloc, show what this machine offers for dma-bufs, then run the example
# pipelines end to end (negotiate, explain, allocate, fill and read back; live devices if any).
# With arguments, runs `devalloc ARGS...` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ $# -gt 0 ]; then
  exec .venv/bin/devalloc "$@"
fi
.venv/bin/devalloc info
echo

# The service, briefly: `devalloc serve` owns heap access; a client with no access to the heap
# nodes (uid 65534 when this runs as root) allocates through it, then the books are shown.
echo "service: devalloc serve on a temporary socket; a client allocates through it"
sdir=$(mktemp -d /tmp/devalloc-main.XXXXXX)
chmod 755 "$sdir"
.venv/bin/devalloc serve --socket "$sdir/socket" &
spid=$!
trap 'kill -TERM "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; rm -rf "$sdir"' EXIT
for _ in $(seq 100); do [ -S "$sdir/socket" ] && break; sleep 0.1; done
client=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
  client=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  echo "service: the client runs as uid 65534 (nobody)"
fi
"${client[@]}" .venv/bin/devalloc alloc --service "$sdir/socket" -d uvc-webcam --size 640x480 \
  --cpu-only --cpu-access rw
.venv/bin/devalloc service status --socket "$sdir/socket"
kill -TERM "$spid"
wait "$spid" || true
trap - EXIT
rm -rf "$sdir"
echo

exec .venv/bin/devalloc examples examples
