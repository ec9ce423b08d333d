#!/usr/bin/env bash
# The whole test suite: unit tests (no root) and namespace tests (root).
# One debug build serves both; tests run the binaries cargo built.
set -euo pipefail
cd "$(dirname "$0")/.."
# As root, install what the namespace and package tests run (idempotent).
# Then a test that finds a part missing fails instead of skipping.
if [ "$(id -u)" -eq 0 ]; then
    bash scripts/install-deps.sh
    export CI=1
fi
cargo test -- --test-threads=2 "$@"
