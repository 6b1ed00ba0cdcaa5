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
exec .venv/bin/devalloc examples examples
