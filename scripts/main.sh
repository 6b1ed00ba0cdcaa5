#!/usr/bin/env bash
# The main job: install devalloc and show what this machine offers for dma-bufs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/devalloc "$@"
