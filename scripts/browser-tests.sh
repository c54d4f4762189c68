#!/usr/bin/env bash
# The browser tests (tests/browser): Strongroom's pages and flows in Debian's
# headless Chromium, driven by Playwright (playwright-core: no browser
# download), checked with axe-core. Needs node >= 20, npm and /usr/bin/chromium
# (.ci/run installs them). Arguments are passed to `node --test` (e.g. a file).
set -euo pipefail
cd "$(dirname "$0")/../tests/browser"
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "browser tests: $chromium not found; install Debian's chromium (apt-get install chromium), or set CHROMIUM" >&2
  exit 1
fi
command -v node >/dev/null || { echo "browser tests: node not found (apt-get install nodejs npm)" >&2; exit 1; }
# npm ci only when the lock file changed since the last install.
if ! cmp -s package-lock.json node_modules/.installed-lock.json 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-lock.json
fi
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(*.test.mjs)
exec node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
