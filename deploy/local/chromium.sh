#!/usr/bin/env bash
# Debian's chromium for the dashboard's browser tests (Playwright drives /usr/bin/chromium; it never
# downloads a browser of its own). Installs it when it is missing and we are root; otherwise says how.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the dashboard's browser tests…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "/usr/bin/chromium is missing: the dashboard's browser tests need Debian's chromium package." >&2
echo "Install it as root: apt-get update && apt-get install -y chromium" >&2
echo "(the browser tests fail without it; they are never skipped)" >&2
