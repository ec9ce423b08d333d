#!/usr/bin/env bash
# The whole test suite: unit tests (no root) and namespace tests (root).
# One debug build serves both; tests run the binaries cargo built.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -- --test-threads=2 "$@"
