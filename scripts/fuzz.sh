#!/usr/bin/env bash
# `npm run fuzz`: the property tests under test/fuzz with many more runs than `npm test`
# gives them. FUZZ_RUNS (default 20000) is the run count per property (slow properties
# take a share of it); FUZZ_SEED (and FUZZ_PATH) replay a failure fast-check printed.
# Pass test files to fuzz only those.
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_RUNS="${FUZZ_RUNS:-20000}"
if [ $# -gt 0 ]; then files=("$@"); else mapfile -t files < <(find test/fuzz -name '*.test.ts' | sort); fi
echo "fuzz: FUZZ_RUNS=$FUZZ_RUNS${FUZZ_SEED:+ FUZZ_SEED=$FUZZ_SEED} over ${files[*]}" >&2
exec node --import tsx --test --test-concurrency=1 "${files[@]}"
