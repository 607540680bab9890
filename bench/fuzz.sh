#!/usr/bin/env bash
# Fuzz run (issue 6): each proptest fuzz target in tests/fuzz.rs for
# FUZZ_SECONDS (default 60) seconds, one after another, printing each
# target's execution count. A failure prints the target and saves the
# shrunk input under target/tmp/fuzz-crash-<target>.bin; once fixed, copy
# it into tests/corpus/crashes/ so `corpus_replays_cleanly` keeps it fixed.
#
#   bench/fuzz.sh            # about a minute per target (6 targets)
#   FUZZ_SECONDS=5 bench/fuzz.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
cargo test --release --test fuzz -- --nocapture --test-threads 1 fuzz_ 2>&1 |
    grep -E 'fuzz [a-z_]+: [0-9]|panicked|failed|test result'
