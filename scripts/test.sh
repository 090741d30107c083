#!/usr/bin/env bash
# The whole test suite: provision real services, lint, format check, type check, build, then every test.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/provision.sh
mkdir -p .test-tmp
status=0
npx eslint . || status=1
npx prettier --check . || status=1
npx tsc -p tsconfig.test.json || status=1
npm run --silent build || status=1
npx vitest run --reporter=default --reporter=json --outputFile=.test-tmp/vitest.json "$@" || status=1
node scripts/summarize.mjs .test-tmp/vitest.json || status=1
exit $status
