#!/usr/bin/env bash
# Make sure the system services the tests use for real are present and running:
# Chromium (browser tests), jq and curl (docs/service.md walkthrough), PostgreSQL on 127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379.
# Tests that need a missing service skip with a reason, so a failure here is reported, not fatal.
set -uo pipefail

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq && APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v chromium >/dev/null; then
  apt_install chromium chromium-driver || echo "ci: could not install chromium; browser tests will skip"
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql || echo "ci: could not install postgresql"
  if command -v pg_ctlcluster >/dev/null; then
    version=$(ls /etc/postgresql | sort -n | tail -1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    grep -q "^host all all 127.0.0.1/32 trust" "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || echo "ci: could not start postgresql"
  fi
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  command -v redis-server >/dev/null || apt_install redis-server || echo "ci: could not install redis-server"
  if command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || echo "ci: no redis"
  fi
fi
if ! command -v jq >/dev/null || ! command -v curl >/dev/null; then
  apt_install jq curl || echo "ci: could not install jq/curl; the docs walkthrough test will skip"
fi
exit 0
