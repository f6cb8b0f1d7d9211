#!/usr/bin/env bash
# Runs a real Keystone (OpenStack Identity, Debian's keystone package) on 127.0.0.1:5000 for the
# test suites, backed by a database of its own on the local PostgreSQL, and keeps the accounts
# the suites log in with in place.
#
# Usage: scripts/keystone.sh start|fixtures|stop|status
#
#   start     Start Keystone unless it already answers, then run fixtures. Safe to run again.
#   fixtures  Create whatever test accounts, roles and catalog entries are missing.
#   stop      Stop the uwsgi server started by `start`; the database and keys are kept.
#   status    Exit 0 when Keystone answers on http://127.0.0.1:5000/v3, 1 otherwise.
#
# Environment:
#   GLIMPSE_TEST_KEYSTONE_DIR             state dir: config, keys, logs, pid file
#                                    (default /var/tmp/glimpse-keystone)
#   GLIMPSE_TEST_KEYSTONE_ADMIN_PASSWORD  password of the bootstrap user `admin` (default admin-secret)
#   GLIMPSE_TEST_KEYSTONE_USER_PASSWORD   password of every fixture user (default secret)
#
# Fixtures, all in domain Default:
#   projects alpha and beta, each with users <project>-admin (role admin), <project>-member
#   (member), <project>-reader (reader) and <project>-norole (no role anywhere, so it cannot
#   obtain a token scoped to any project); project service with user glimpse holding the roles
#   service and admin, and reader on the system (to read unified limits); service glance
#   (type image) with public, internal and admin endpoints http://127.0.0.1:9292 in RegionOne
#   and http://127.0.0.1:9393 in RegionTwo; service swift (type object-store) with
#   http://127.0.0.1:8080/v1/KEY_$(project_id)s in RegionOne, the Keystone-authenticated
#   accounts of scripts/swift.sh.
#   The bootstrap makes admin imply member and member imply reader, so tokens carry the implied
#   roles too.
#
# Needs the Debian packages keystone, uwsgi-core, uwsgi-plugin-python3 and python3-psycopg2
# (scripts/install-test-peers.sh keystone installs them and runs `start`), and PostgreSQL
# accepting connections from user postgres on 127.0.0.1:5432 without a password.
set -euo pipefail

# shellcheck source=lib/daemons.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemons.sh"

STATE_DIR=${GLIMPSE_TEST_KEYSTONE_DIR:-/var/tmp/glimpse-keystone}
ADMIN_PASSWORD=${GLIMPSE_TEST_KEYSTONE_ADMIN_PASSWORD:-admin-secret}
USER_PASSWORD=${GLIMPSE_TEST_KEYSTONE_USER_PASSWORD:-secret}

LISTEN=127.0.0.1:5000
KEYSTONE_URL=http://$LISTEN/v3
PROCESSES=2
START_TIMEOUT=120
STOP_TIMEOUT=30

PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
DB_NAME=glimpse_keystone
DB_URL=postgresql://$PG_USER@$PG_HOST:$PG_PORT/$DB_NAME

# Debian's interpreter, which has the OpenStack modules; the first python3 on PATH may not.
PYTHON=/usr/bin/python3
KEYSTONE_MANAGE=/usr/bin/keystone-manage
KEYSTONE_WSGI=/usr/bin/keystone-wsgi-public

CONF_NAME=keystone.conf
CONF=$STATE_DIR/$CONF_NAME
PID_FILE=$STATE_DIR/uwsgi.pid
UWSGI_LOG=$STATE_DIR/uwsgi.log
KEYSTONE_LOG=$STATE_DIR/keystone.log
MANAGE_LOG=$STATE_DIR/keystone-manage.log
FERNET_KEYS=$STATE_DIR/fernet-keys
CREDENTIAL_KEYS=$STATE_DIR/credential-keys
LOCK_FILE=$STATE_DIR/lock

log() { printf 'keystone: %s\n' "$*"; }
die() { printf 'keystone: error: %s\n' "$*" >&2; exit 1; }

# answering: Keystone's /v3 returns 200. Proxies are bypassed: the server is on loopback.
answering() {
  "$PYTHON" - "$KEYSTONE_URL" >/dev/null 2>&1 <<'PY'
import sys
import urllib.request

opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(sys.argv[1], timeout=3) as response:
    sys.exit(0 if response.status == 200 else 1)
PY
}

# port_taken: something accepts connections on LISTEN.
port_taken() {
  "$PYTHON" - "${LISTEN%:*}" "${LISTEN##*:}" >/dev/null 2>&1 <<'PY'
import socket
import sys

with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3):
    pass
PY
}

# The pid in the pid file, printed only when it is a live uwsgi process.
running_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid=$(tr -dc '0-9' <"$PID_FILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  grep -qa uwsgi "/proc/$pid/cmdline" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

require_tools() {
  local tool
  for tool in "$PYTHON" "$KEYSTONE_MANAGE" "$KEYSTONE_WSGI"; do
    [ -x "$tool" ] || die "$tool not found; run scripts/install-test-peers.sh keystone"
  done
  command -v uwsgi >/dev/null 2>&1 || die "uwsgi not found; install uwsgi-core"
  [ -e /usr/lib/uwsgi/plugins/python3_plugin.so ] ||
    die "the uwsgi python3 plugin is missing; install uwsgi-plugin-python3"
  "$PYTHON" -c 'import psycopg2' 2>/dev/null ||
    die "$PYTHON cannot import psycopg2; install python3-psycopg2"
  command -v psql >/dev/null 2>&1 || die "psql not found; install postgresql-client"
}

psql_admin() {
  PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" \
    -d postgres "$@"
}

ensure_database() {
  local exists
  exists=$(psql_admin -tAc "select 1 from pg_database where datname = '$DB_NAME'") ||
    die "PostgreSQL on $PG_HOST:$PG_PORT does not accept user $PG_USER without a password"
  if [ "$exists" = 1 ]; then
    log "database $DB_NAME exists"
  else
    log "creating database $DB_NAME"
    psql_admin -c "create database $DB_NAME"
  fi
}

write_config() {
  cat >"$CONF" <<EOF
# Generated by scripts/keystone.sh; rewritten on every start.
[DEFAULT]
log_file = $KEYSTONE_LOG
use_stderr = false

[database]
connection = $DB_URL

[token]
provider = fernet

[fernet_tokens]
key_repository = $FERNET_KEYS

[fernet_receipts]
key_repository = $FERNET_KEYS

[credential]
key_repository = $CREDENTIAL_KEYS

[cache]
enabled = false

[identity]
# The fewest bcrypt rounds: test suites authenticate often, and these passwords guard nothing.
password_hash_rounds = 4
EOF
}

# keystone-manage logs to KEYSTONE_LOG; its own output (mostly noise from eventlet at exit)
# goes to MANAGE_LOG, whose tail is shown should a step fail.
manage() {
  if ! "$KEYSTONE_MANAGE" --config-file "$CONF" "$@" >>"$MANAGE_LOG" 2>&1; then
    log_tails "$MANAGE_LOG" "$KEYSTONE_LOG"
    die "keystone-manage $1 failed"
  fi
}

# Every step is idempotent: an up-to-date schema, existing keys and existing bootstrap
# resources are left as they are (bootstrap does reset the admin password to ours).
initialise() {
  local user group
  user=$(id -un)
  group=$(id -gn)
  log "db_sync"
  manage db_sync
  log "fernet_setup and credential_setup"
  manage fernet_setup --keystone-user "$user" --keystone-group "$group"
  manage credential_setup --keystone-user "$user" --keystone-group "$group"
  log "bootstrap"
  manage bootstrap --bootstrap-password "$ADMIN_PASSWORD" --bootstrap-username admin \
    --bootstrap-project-name admin --bootstrap-role-name admin \
    --bootstrap-region-id RegionOne --bootstrap-public-url "$KEYSTONE_URL" \
    --bootstrap-internal-url "$KEYSTONE_URL" --bootstrap-admin-url "$KEYSTONE_URL"
}

# Starts uwsgi detached, in its own session, with nothing inherited but the redirected standard
# descriptors: the lock must be released when this script exits, and a pipe inherited from a
# CI runner must not stay open as long as Keystone runs.
launch_uwsgi() {
  rm -f "$PID_FILE"
  if [ -f "$UWSGI_LOG" ]; then mv -f "$UWSGI_LOG" "$UWSGI_LOG.1"; fi
  log "starting uwsgi on $LISTEN ($PROCESSES processes); log: $UWSGI_LOG"
  (
    close_inherited_fds
    cd "$STATE_DIR"
    exec setsid --wait env -u PYTHONPATH -u PYTHONHOME \
      OS_KEYSTONE_CONFIG_DIR="$STATE_DIR" OS_KEYSTONE_CONFIG_FILES="$CONF_NAME" \
      uwsgi --plugin python3 --http-socket "$LISTEN" --wsgi-file "$KEYSTONE_WSGI" \
      --master --processes "$PROCESSES" --threads 1 --lazy-apps --die-on-term \
      --buffer-size 65535 --add-header "Connection: close" --pidfile "$PID_FILE"
  ) </dev/null >>"$UWSGI_LOG" 2>&1 &
}

# wait_until_answering LAUNCHER_PID: LAUNCHER_PID is the background job, alive while uwsgi is.
wait_until_answering() {
  local launcher=$1 deadline=$((SECONDS + START_TIMEOUT))
  until answering; do
    if ! kill -0 "$launcher" 2>/dev/null; then
      rm -f "$PID_FILE"
      log_tails "$UWSGI_LOG" "$KEYSTONE_LOG"
      die "uwsgi exited before Keystone answered on $KEYSTONE_URL"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tails "$UWSGI_LOG" "$KEYSTONE_LOG"
      stop_server
      die "Keystone did not answer on $KEYSTONE_URL within $START_TIMEOUT s"
    fi
    sleep 0.5
  done
}

start() {
  local started=$SECONDS
  if answering; then
    log "already answering on $KEYSTONE_URL"
    fixtures
    return
  fi
  require_tools
  mkdir -p "$STATE_DIR"
  exec 9>"$LOCK_FILE"
  flock 9
  # Another start may have finished while this one waited for the lock.
  if answering; then
    log "already answering on $KEYSTONE_URL"
  else
    if running_pid >/dev/null; then
      log "a uwsgi from an earlier start is still running without answering; stopping it"
      stop_server
    elif port_taken; then
      die "another program listens on $LISTEN without answering as Keystone; stop it first"
    fi
    ensure_database
    write_config
    initialise
    launch_uwsgi
    wait_until_answering $!
    log "answering on $KEYSTONE_URL after $((SECONDS - started)) s"
  fi
  fixtures
  exec 9>&-
}

stop_server() {
  local pid deadline
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    if answering; then
      log "no uwsgi started by this script is running, yet something answers on $KEYSTONE_URL"
    else
      log "not running"
    fi
    return
  fi
  log "stopping uwsgi (pid $pid)"
  kill -TERM "$pid"
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "uwsgi ignored SIGTERM for $STOP_TIMEOUT s; killing it and its workers"
      pkill -KILL -P "$pid" || true
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$PID_FILE"
  log "stopped"
}

status() {
  if answering; then
    log "answering on $KEYSTONE_URL"
  else
    log "not answering on $KEYSTONE_URL"
    return 1
  fi
}

# Talks to the identity API directly (one process, a few dozen requests) rather than through
# one `openstack` command per resource, which would take about a second each.
fixtures() {
  log "ensuring fixtures"
  KEYSTONE_URL=$KEYSTONE_URL ADMIN_PASSWORD=$ADMIN_PASSWORD USER_PASSWORD=$USER_PASSWORD \
    "$PYTHON" - <<'PY'
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

URL = os.environ["KEYSTONE_URL"]
ADMIN_PASSWORD = os.environ["ADMIN_PASSWORD"]
USER_PASSWORD = os.environ["USER_PASSWORD"]
DOMAIN = "default"

PROJECT_USERS = {"admin": ["admin"], "member": ["member"], "reader": ["reader"], "norole": []}
IMAGE_ENDPOINTS = {"RegionOne": "http://127.0.0.1:9292", "RegionTwo": "http://127.0.0.1:9393"}
# The Swift of scripts/swift.sh, whose keystoneauth serves accounts KEY_<project id>.
OBJECT_STORE_ENDPOINTS = {"RegionOne": "http://127.0.0.1:8080/v1/KEY_$(project_id)s"}
INTERFACES = ("public", "internal", "admin")

opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
changes = []


class ApiError(Exception):
    def __init__(self, method, path, status, body):
        super().__init__(f"{method} {path}: HTTP {status} {body[:300]}")
        self.status = status


def call(method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(URL + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json")
    if token:
        request.add_header("X-Auth-Token", token)
    try:
        with opener.open(request, timeout=60) as response:
            raw = response.read()
            return response.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raise ApiError(method, path, error.code, error.read().decode(errors="replace"))


def password_auth(name, password, project=None):
    auth = {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": name, "domain": {"id": DOMAIN}, "password": password}},
        }
    }
    if project:
        auth["scope"] = {"project": {"name": project, "domain": {"id": DOMAIN}}}
    headers, _ = call("POST", "/auth/tokens", {"auth": auth})
    return headers["X-Subject-Token"]


try:
    TOKEN = password_auth("admin", ADMIN_PASSWORD, "admin")
except ApiError as error:
    sys.exit(f"cannot log in as the bootstrap admin (GLIMPSE_TEST_KEYSTONE_ADMIN_PASSWORD?): {error}")


def api(method, path, body=None):
    return call(method, path, body, TOKEN)[1]


def query(**params):
    return "?" + urllib.parse.urlencode(params)


def by_name(items):
    return {item["name"]: item for item in items}


# Filled in once up front by load(), so a run with nothing to do costs a handful of requests
# (plus one password check per fixture user).
roles = {}
projects = {}
users = {}
assigned = {}


def load():
    roles.update(by_name(api("GET", "/roles")["roles"]))
    projects.update(by_name(api("GET", "/projects" + query(domain_id=DOMAIN))["projects"]))
    users.update(by_name(api("GET", "/users" + query(domain_id=DOMAIN))["users"]))
    for assignment in api("GET", "/role_assignments")["role_assignments"]:
        if "user" in assignment and "project" in assignment["scope"]:
            key = (assignment["user"]["id"], assignment["scope"]["project"]["id"])
            assigned.setdefault(key, set()).add(assignment["role"]["id"])


def ensure_role(name):
    if name not in roles:
        changes.append(f"created role {name}")
        roles[name] = api("POST", "/roles", {"role": {"name": name}})["role"]
    return roles[name]


def ensure_project(name):
    if name not in projects:
        changes.append(f"created project {name}")
        body = {"name": name, "domain_id": DOMAIN, "enabled": True}
        projects[name] = api("POST", "/projects", {"project": body})["project"]
    return projects[name]


def ensure_user(name):
    if name not in users:
        changes.append(f"created user {name}")
        body = {"name": name, "domain_id": DOMAIN, "password": USER_PASSWORD, "enabled": True}
        users[name] = api("POST", "/users", {"user": body})["user"]
        return users[name]
    user = users[name]
    if not user.get("enabled", True):
        changes.append(f"enabled user {name}")
        api("PATCH", f"/users/{user['id']}", {"user": {"enabled": True}})
    try:
        password_auth(name, USER_PASSWORD)
    except ApiError as error:
        if error.status != 401:
            raise
        changes.append(f"reset the password of user {name}")
        api("PATCH", f"/users/{user['id']}", {"user": {"password": USER_PASSWORD}})
    return user


def converge_roles(user, project, wanted):
    """Give user exactly the wanted roles on project, by direct assignment."""
    current = assigned.get((user["id"], project["id"]), set())
    names = {role["id"]: name for name, role in roles.items()}
    base = f"/projects/{project['id']}/users/{user['id']}/roles"
    for role in wanted:
        if role["id"] not in current:
            changes.append(f"granted {role['name']} to {user['name']} on {project['name']}")
            api("PUT", f"{base}/{role['id']}")
    for role_id in current - {role["id"] for role in wanted}:
        role_name = names.get(role_id, role_id)
        changes.append(f"revoked {role_name} from {user['name']} on {project['name']}")
        api("DELETE", f"{base}/{role_id}")


def ensure_system_role(user, role):
    """Give user a role on the system (system-scoped tokens, e.g. to read every limit)."""
    base = f"/system/users/{user['id']}/roles"
    if role["id"] not in {held["id"] for held in api("GET", base)["roles"]}:
        changes.append(f"granted {role['name']} on the system to {user['name']}")
        api("PUT", f"{base}/{role['id']}")


def ensure_region(region_id, regions):
    if region_id not in regions:
        changes.append(f"created region {region_id}")
        api("POST", "/regions", {"region": {"id": region_id}})
        regions.add(region_id)


def ensure_service(name, service_type, description):
    for service in api("GET", "/services" + query(type=service_type))["services"]:
        if service.get("name") == name:
            return service
    changes.append(f"created service {name} ({service_type})")
    body = {"name": name, "type": service_type, "description": description, "enabled": True}
    return api("POST", "/services", {"service": body})["service"]


def ensure_endpoint(service, endpoints, region_id, interface, url):
    kind = service["type"]
    found = [
        endpoint
        for endpoint in endpoints
        if endpoint.get("region_id") == region_id and endpoint["interface"] == interface
    ]
    if not found:
        changes.append(f"created {interface} {kind} endpoint {url} in {region_id}")
        body = {"service_id": service["id"], "region_id": region_id, "interface": interface}
        api("POST", "/endpoints", {"endpoint": {**body, "url": url, "enabled": True}})
        return
    first, extra = found[0], found[1:]
    if first["url"] != url or not first.get("enabled", True):
        changes.append(f"updated {interface} {kind} endpoint in {region_id} to {url}")
        api("PATCH", f"/endpoints/{first['id']}", {"endpoint": {"url": url, "enabled": True}})
    for endpoint in extra:
        changes.append(f"deleted duplicate {interface} {kind} endpoint in {region_id}")
        api("DELETE", f"/endpoints/{endpoint['id']}")


def ensure_endpoints(service, urls, regions):
    endpoints = api("GET", "/endpoints" + query(service_id=service["id"]))["endpoints"]
    for region_id, url in urls.items():
        ensure_region(region_id, regions)
        for interface in INTERFACES:
            ensure_endpoint(service, endpoints, region_id, interface, url)


try:
    load()
    for role_name in ("admin", "member", "reader", "service"):
        ensure_role(role_name)
    for project_name in ("alpha", "beta"):
        project = ensure_project(project_name)
        for suffix, role_names in PROJECT_USERS.items():
            user = ensure_user(f"{project_name}-{suffix}")
            converge_roles(user, project, [roles[name] for name in role_names])
    service_project = ensure_project("service")
    glimpse = ensure_user("glimpse")
    converge_roles(glimpse, service_project, [roles["service"], roles["admin"]])
    # Keystone shows other projects' limits only to system-scoped tokens.
    ensure_system_role(glimpse, roles["reader"])

    regions = {region["id"] for region in api("GET", "/regions")["regions"]}
    image = ensure_service("glance", "image", "Glimpse")
    ensure_endpoints(image, IMAGE_ENDPOINTS, regions)
    swift = ensure_service("swift", "object-store", "Swift of scripts/swift.sh")
    ensure_endpoints(swift, OBJECT_STORE_ENDPOINTS, regions)
except ApiError as error:
    sys.exit(f"fixtures: {error}")

for change in changes:
    print(f"keystone: fixtures: {change}")
print(f"keystone: fixtures in place ({len(changes)} changes)")
PY
}

main() {
  [ $# -eq 1 ] || die "usage: $0 start|fixtures|stop|status"
  case $1 in
    start) start ;;
    fixtures) fixtures ;;
    stop) stop_server ;;
    status) status ;;
    *) die "unknown command '$1' (known: start, fixtures, stop, status)" ;;
  esac
}

main "$@"
