#!/usr/bin/env bash
# Debian's promtool (package `prometheus`) for the tests of the alert and recording rules in deploy/prometheus/
# (`promtool check rules`, `promtool test rules`). Installs it when it is missing and we are root; otherwise says how.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's prometheus package (promtool) for the tests of the alert rules…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  exit 0
fi
echo "promtool is missing: the tests of deploy/prometheus/ need Debian's prometheus package." >&2
echo "Install it as root: apt-get update && apt-get install -y --no-install-recommends prometheus" >&2
echo "(the rule tests fail without it; they are never skipped)" >&2
