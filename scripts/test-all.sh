#!/usr/bin/env bash
# Install everything and run every test: lint, types, host tests, then the kernel tests inside the
# test VM (Debian's stock 6.12 kernel under QEMU). Exits non-zero on any failure, including
# "no tests ran".
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==== %s\n' "$*"; }

step "setup"
scripts/setup.sh --dev

step "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

step "mypy --strict"
.venv/bin/mypy

step "host tests"
DEVALLOC_STRICT=1 .venv/bin/pytest

step "kernel tests in the test VM"
tests/vm/run.sh --timeout "${DEVALLOC_VM_TIMEOUT:-1200}"
