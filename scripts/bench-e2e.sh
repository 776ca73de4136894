#!/usr/bin/env bash
# End-to-end benchmark: raven sim -> raven serve (release) -> gRPC subscribers.
# Arguments go to the bench, e.g. `scripts/bench-e2e.sh -- latency --duration 30`
# (see the doc comment of crates/raven/benches/e2e.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p raven --bench e2e "$@"
