#!/usr/bin/env bash
# `npm test`: the whole test suite. Installs or names what the tests need, type-checks,
# then runs every test file with Node's test runner (real clamd, Postfix's smtp-sink,
# swaks, PostgreSQL, PGlite). Pass file paths to run a subset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
# The embedded store's initdb template (npm ci makes it; an older checkout may not have it yet).
node --import tsx scripts/pglite-template.ts --if-stale >&2
echo "typecheck: tsc --noEmit" >&2
npx tsc --noEmit -p .
if [ $# -gt 0 ]; then files=("$@"); else mapfile -t files < <(find test -name '*.test.ts' | sort); fi
exec node --import tsx --test --test-concurrency=2 --test-timeout=600000 "${files[@]}"
