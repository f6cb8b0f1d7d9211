#!/usr/bin/env bash
# Installs the outside programs the test suites drive (the glance and openstack CLIs, qemu-img,
# a Keystone, a Swift), from Debian packages, without prompting. Safe to run again: a peer whose
# commands are already present costs nothing, and apt is not touched at all when every peer is
# present.
# Peers with a setup step (keystone, swift: start the servers) run it on every call.
#
# Usage: scripts/install-test-peers.sh [peer...]   (default: every peer in PEERS)
#
# Adding a peer (Keystone, Swift, ...): write peer_<name>, which calls need_command for each
# command it relies on, and optionally setup_<name>, which runs after the packages are installed
# (to start a service, bootstrap accounts, ...). Then add <name> to PEERS.
set -euo pipefail

PEERS=(glance_cli openstack_cli qemu_img keystone swift)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Debian packages queued by the peer functions, installed in one apt transaction.
MISSING_PACKAGES=()
# Commands, files and Debian python3 modules that must exist once the queued packages are
# installed.
EXPECTED_COMMANDS=()
EXPECTED_FILES=()
EXPECTED_MODULES=()

log() { printf 'install-test-peers: %s\n' "$*"; }
die() { printf 'install-test-peers: error: %s\n' "$*" >&2; exit 1; }

# need_command COMMAND PACKAGE: queue PACKAGE unless COMMAND is already on PATH.
need_command() {
  local command=$1 package=$2
  EXPECTED_COMMANDS+=("$command")
  if command -v "$command" >/dev/null 2>&1; then
    log "$command: present ($(command -v "$command"))"
  else
    log "$command: missing, will install $package"
    MISSING_PACKAGES+=("$package")
  fi
}

# need_file PATH PACKAGE: queue PACKAGE unless PATH exists.
need_file() {
  local path=$1 package=$2
  EXPECTED_FILES+=("$path")
  if [ -e "$path" ]; then
    log "$path: present"
  else
    log "$path: missing, will install $package"
    MISSING_PACKAGES+=("$package")
  fi
}

# need_python_module MODULE PACKAGE: queue PACKAGE unless Debian's python3 can import MODULE.
# (Not the python3 first on PATH, which may be a separate build without Debian's modules.)
need_python_module() {
  local module=$1 package=$2
  EXPECTED_MODULES+=("$module")
  if python_module_present "$module"; then
    log "python3 module $module: present"
  else
    log "python3 module $module: missing, will install $package"
    MISSING_PACKAGES+=("$package")
  fi
}

python_module_present() {
  [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import $1" >/dev/null 2>&1
}

peer_glance_cli() { need_command glance python3-glanceclient; }
peer_openstack_cli() { need_command openstack python3-openstackclient; }
peer_qemu_img() { need_command qemu-img qemu-utils; }

# Keystone served by uwsgi, with its database on the local PostgreSQL (scripts/keystone.sh).
peer_keystone() {
  need_command keystone-manage keystone
  need_command uwsgi uwsgi-core
  need_file /usr/lib/uwsgi/plugins/python3_plugin.so uwsgi-plugin-python3
  need_python_module psycopg2 python3-psycopg2
}
# Needs PostgreSQL accepting connections on 127.0.0.1:5432.
setup_keystone() { bash "$SCRIPT_DIR/keystone.sh" start; }

# Swift with tempauth and the S3 API on 127.0.0.1:8080, and the memcached it keeps tokens in
# (scripts/swift.sh). The Swift servers come with python3-swift; the swift-* packages only add
# wrappers and init scripts, which the start script does not use.
peer_swift() {
  need_python_module swift python3-swift
  need_python_module keystonemiddleware python3-keystonemiddleware
  need_command memcached memcached
}
setup_swift() { bash "$SCRIPT_DIR/swift.sh" start; }

# Root runs apt directly; anyone else goes through sudo, which may ask for a password.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "installing packages needs root or sudo: $*"
  fi
}

install_missing_packages() {
  if [ ${#MISSING_PACKAGES[@]} -eq 0 ]; then
    log "every peer is present; skipping apt"
    return
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found; install these packages by hand: ${MISSING_PACKAGES[*]}"

  # Deduplicated, since two peers may share a package.
  local packages
  mapfile -t packages < <(printf '%s\n' "${MISSING_PACKAGES[@]}" | sort -u)
  log "installing: ${packages[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${packages[@]}" </dev/null
}

check_installed() {
  local command path module
  for command in "${EXPECTED_COMMANDS[@]}"; do
    command -v "$command" >/dev/null 2>&1 || die "$command is still missing after installing"
  done
  for path in "${EXPECTED_FILES[@]}"; do
    [ -e "$path" ] || die "$path is still missing after installing"
  done
  for module in "${EXPECTED_MODULES[@]}"; do
    python_module_present "$module" ||
      die "python3 module $module is still missing after installing"
  done
}

main() {
  local peers=("$@") peer
  [ ${#peers[@]} -gt 0 ] || peers=("${PEERS[@]}")

  for peer in "${peers[@]}"; do
    declare -F "peer_$peer" >/dev/null || die "unknown peer '$peer' (known: ${PEERS[*]})"
    "peer_$peer"
  done
  install_missing_packages
  check_installed
  for peer in "${peers[@]}"; do
    if declare -F "setup_$peer" >/dev/null; then "setup_$peer"; fi
  done
  log "done"
}

main "$@"
