#!/usr/bin/env bash
# test-deps.sh - install the host tools the tests need beyond Rust and LocalStack.
#
# Why: the cloud-init tests (tests/it/cloudinit.rs) validate every rendered user-data
# with the cloud-init the instances run (Debian 12's, 22.4) and lint the shell scripts
# with shellcheck; the capture tests compare their analysis with tshark's on files
# crafted byte by byte and on real tcpdump captures, with loss induced by nftables in a
# network namespace of their own.
# This makes all of them present on a Debian 12 host, from the Debian package archive:
#   - Debian packages: shellcheck, tshark, tcpdump, nftables; the tools the instance
#     scripts and the tests run on this host (curl, openssl, iproute2's ip, procps'
#     kill, systemd's systemd-analyze); python3-venv for LocalStack's virtualenv; and
#     the Python modules `cloud-init schema` imports under Debian's /usr/bin/python3
#     (yaml, jsonschema, requests, configobj, jsonpatch). Without jsonschema
#     cloud-init 22.4 skips validation silently and calls anything valid, so it is not
#     optional here.
#   - cloud-init itself, NOT installed: `apt-get download` + `dpkg-deb -x` into the
#     cache dir below, so nothing on this host runs it at boot. Run it as
#       PYTHONPATH=<root>/usr/lib/python3/dist-packages \
#         /usr/bin/python3 <root>/usr/bin/cloud-init schema --config-file FILE
# Idempotent: a second run checks and does nothing (the extracted tree carries a
# version marker). Prints what it installs on stderr. Needs root for apt-get.
#
# Usage: scripts/test-deps.sh [--print-cloud-init-root]
#   --print-cloud-init-root   after ensuring everything, print the extracted tree's path
#
# Environment:
#   LABCTL_CACHE   cache dir (default $HOME/.cache/labctl); cloud-init goes to
#                  $LABCTL_CACHE/cloud-init/root, its version to .../cloud-init/VERSION

set -euo pipefail

print_root=false
case "${1:-}" in
  "") ;;
  --print-cloud-init-root) print_root=true ;;
  -h | --help)
    sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit 0
    ;;
  *)
    echo "test-deps.sh: unknown argument: $1 (try --help)" >&2
    exit 2
    ;;
esac

cache=${LABCTL_CACHE:-$HOME/.cache/labctl}/cloud-init
root=$cache/root
marker=$cache/VERSION
# The series the instances run (Debian 12). A different one means the wrong archive.
series=22.4

# python3 provides /usr/bin/python3 (Debian's, not a pyenv shim on PATH).
packages=(shellcheck python3 python3-yaml python3-jsonschema python3-requests
  python3-configobj python3-jsonpatch python3-venv tshark tcpdump nftables curl openssl
  iproute2 procps systemd)

export DEBIAN_FRONTEND=noninteractive
say() { echo "test-deps.sh: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo --preserve-env=DEBIAN_FRONTEND "$@"
  else
    say "need root (or sudo) to run: $*"
    exit 1
  fi
}

# apt-get, retried once after `apt-get update` (a fresh machine may have no lists).
apt_retry() {
  if ! "$@"; then
    say "apt-get failed; running apt-get update and retrying"
    as_root apt-get update -q
    "$@"
  fi
}

missing_packages() {
  local pkg status
  for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = installed ] || echo "$pkg"
  done
}

mapfile -t missing < <(missing_packages)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  apt_retry as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  PYTHONNOUSERSITE=1 /usr/bin/python3 -c 'import yaml, jsonschema, requests, configobj, jsonpatch'
fi

# cloud-init, extracted once. The marker is written last: its presence means a whole tree.
if [ ! -s "$marker" ] || [ ! -f "$root/usr/bin/cloud-init" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  if [ ! -s "$marker" ] || [ ! -f "$root/usr/bin/cloud-init" ]; then
    work=$(mktemp -d "$cache/.work.XXXXXX")
    trap 'rm -rf -- "$work"' EXIT
    say "downloading cloud-init (extracted to $root, not installed)"
    # APT::Sandbox::User=root: the _apt user cannot write into a root-only cache dir.
    (cd "$work" && apt_retry apt-get download -q -o APT::Sandbox::User=root cloud-init >&2)
    deb=$(find "$work" -maxdepth 1 -name 'cloud-init_*.deb' -print -quit)
    [ -n "$deb" ] || {
      say "apt-get download cloud-init produced no .deb"
      exit 1
    }
    version=$(dpkg-deb -f "$deb" Version)
    case "$version" in
      "$series".*) ;;
      *)
        say "cloud-init $version is not $series.x (Debian 12's); is this Debian 12?"
        exit 1
        ;;
    esac
    dpkg-deb -x "$deb" "$work/root"
    # Smoke test before committing: it must start and report its version.
    got=$(PYTHONPATH=$work/root/usr/lib/python3/dist-packages PYTHONNOUSERSITE=1 \
      PYTHONDONTWRITEBYTECODE=1 \
      /usr/bin/python3 "$work/root/usr/bin/cloud-init" --version 2>&1) || {
      say "extracted cloud-init does not run: $got"
      exit 1
    }
    rm -rf -- "$root"
    mv "$work/root" "$root"
    echo "$version" >"$marker"
    say "cloud-init $version ready (${got##*/})"
  fi
fi

if "$print_root"; then
  echo "$root"
fi
