#!/usr/bin/env bash
# Debian packages the test suite needs: a real redis-server (behind the Upstash REST stand-in) and Chromium
# (the playground's browser tests drive it with playwright-core).
# Runs before `npm test`; installs what is missing when it can (root with apt-get), else says what to install.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: installing ${missing[*]} with apt-get" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The tests start their own servers; a packaged service left running is not needed.
  (service redis-server stop >/dev/null 2>&1 || true)
else
  echo "test-deps: missing ${missing[*]}; install it (e.g. sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
