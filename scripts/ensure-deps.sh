#!/usr/bin/env bash
# Installs (as root, from Debian's packages) or names what Backstop's tests need:
# clamd + sigtool + the ClamAV test files, 7z/zip/gcab/genisoimage/uuencode/bzip2 (archives and encodings
# the scan tests build), Postfix for smtp-sink/smtp-source
# (configured as "No configuration" so it never takes port 25), swaks, python3,
# BIND for the DNS tests, Chromium for the browser tests; and checks that
# PostgreSQL answers on 127.0.0.1:5432. Fails at once naming what is missing.
set -euo pipefail

need_pkgs=()
check() { # command package
  command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || need_pkgs+=("$2")
}
check clamd clamav-daemon
check sigtool clamav
[ -f /usr/share/clamav-testfiles/clam.exe ] || need_pkgs+=(clamav-testfiles)
check /usr/sbin/smtp-sink postfix
check swaks swaks
check 7z p7zip-full
check zip zip
check gcab gcab
check genisoimage genisoimage
check uuencode sharutils
check bzip2 bzip2
check python3 python3
check named bind9
check dig bind9-dnsutils
check chromium chromium
check nft nftables
check systemd-analyze systemd

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "backstop tests need these Debian packages: ${need_pkgs[*]}" >&2
    echo "install them with: sudo apt-get install ${need_pkgs[*]}" >&2
    exit 1
  fi
  echo "installing Debian packages: ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq >&2
  apt-get install -y -qq "${need_pkgs[@]}" >&2
fi

# The clamav-daemon package may try to start a system clamd with no signature
# database (no internet here); the tests run their own, so none is needed.

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >&2 || true
    sleep 2
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "backstop tests need PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres (database test)" >&2
    exit 1
  fi
fi

# npm packages: installed again when the lockfile's content differs from the one last installed (its hash
# is kept in node_modules; file times say nothing after a fresh checkout or a rebase).
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.backstop-lock.sha256
if [ ! -d node_modules ] || [ "$(cat "$stamp" 2>/dev/null)" != "$lock_hash" ]; then
  if [ -L node_modules ]; then
    # npm ci through a link would empty the checkout it points to, under every other user of it.
    echo "node_modules is a link to $(readlink node_modules) and does not match package-lock.json: run npm ci there" >&2
    exit 1
  fi
  npm ci --no-audit --no-fund >&2
  echo "$lock_hash" > "$stamp"
fi
