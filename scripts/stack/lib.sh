# shellcheck shell=bash disable=SC2034
# Helpers shared by scripts/stack/{docker,native,e2e}.sh. Sourced, never run.

# Repository root (scripts/stack/ is two levels down).
STACK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Where `make backup` writes and `make restore` reads, in both modes.
BACKUP_ROOT="${BACKUP_DIR:-$STACK_ROOT/docker/backups}"
# Seconds a service may take to become ready (start) or to exit (stop).
STACK_TIMEOUT="${STACK_TIMEOUT:-90}"
STACKUTIL="$STACK_ROOT/scripts/stack/stackutil.py"

if [ -t 1 ]; then
  C_OK=$'\033[32m' C_BAD=$'\033[31m' C_DIM=$'\033[2m' C_HEAD=$'\033[1m' C_OFF=$'\033[0m'
else
  C_OK="" C_BAD="" C_DIM="" C_HEAD="" C_OFF=""
fi

say() { printf '%s\n' "$*"; }
step() { printf '%s==> %s%s\n' "$C_HEAD" "$*" "$C_OFF"; }
warn() { printf '%swarning:%s %s\n' "$C_BAD" "$C_OFF" "$*" >&2; }
die() {
  printf '%serror:%s %s\n' "$C_BAD" "$C_OFF" "$*" >&2
  exit 1
}

# wait_until DESCRIPTION TIMEOUT_SECONDS COMMAND... — polls COMMAND every 0.25 s until
# it succeeds; fails (returns 1, with a message) when the timeout passes first.
wait_until() {
  local what="$1" timeout="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      warn "timed out after ${timeout}s waiting for: $what"
      return 1
    fi
    sleep 0.25
  done
}

# port_open HOST PORT — something accepts TCP connections there.
port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# http_code URL [CURL ARGS...] — the HTTP status code (000 when nothing answers).
http_code() {
  local url="$1"
  shift
  curl -s -o /dev/null -m 5 -w '%{http_code}' "$@" "$url" 2>/dev/null || true
}

http_ok() {
  local code
  code="$(http_code "$@")"
  [ "${code:0:1}" = 2 ]
}

# backup_name — raven_backup_YYYYmmdd_HHMMSS (UTC, like the guide's example).
backup_name() {
  date -u +raven_backup_%Y%m%d_%H%M%S
}

# resolve_backup NAME — the directory of backup NAME (a name under BACKUP_ROOT or a path).
resolve_backup() {
  local name="${1:-}"
  [ -n "$name" ] || die "name the backup: make restore BACKUP_NAME=raven_backup_YYYYmmdd_HHMMSS (see: ls $BACKUP_ROOT)"
  if [ -d "$name" ]; then
    (cd "$name" && pwd)
  elif [ -d "$BACKUP_ROOT/$name" ]; then
    printf '%s\n' "$BACKUP_ROOT/$name"
  else
    die "no backup '$name' in $BACKUP_ROOT (have: $(find "$BACKUP_ROOT" -mindepth 1 -maxdepth 1 -type d -printf '%f ' 2>/dev/null))"
  fi
}

# url_table ROWS... — prints the guide's service table; each row "Service|URL|Credentials".
url_table() {
  printf '%s%-20s %-32s %s%s\n' "$C_HEAD" "Service" "URL" "Credentials" "$C_OFF"
  local row service url creds
  for row in "$@"; do
    IFS='|' read -r service url creds <<<"$row"
    printf '%-20s %-32s %s\n' "$service" "$url" "$creds"
  done
}

# Redis BGSAVE, finished: REDIS_CLI (an array set by the caller) reaches the server.
# Waits out a save already running, starts ours (SCHEDULE: after an AOF rewrite in
# progress) and waits for INFO's rdb_saves to count it.
redis_persist_field() {
  "${REDIS_CLI[@]}" info persistence | tr -d '\r' | awk -F: -v k="$1" '$1 == k {print $2}'
}
redis_idle() { [ "$(redis_persist_field rdb_bgsave_in_progress)" = 0 ]; }
redis_saves_above() { [ "$(redis_persist_field rdb_saves)" -gt "$1" ]; }
redis_bgsave() {
  local saves reply attempt
  for attempt in 1 2 3 4 5; do
    wait_until "Redis background save to finish" "$STACK_TIMEOUT" redis_idle || return 1
    saves="$(redis_persist_field rdb_saves)"
    reply="$("${REDIS_CLI[@]}" bgsave schedule | tr -d '\r')"
    case "$reply" in
      "Background saving started" | "Background saving scheduled")
        wait_until "Redis BGSAVE" "$STACK_TIMEOUT" redis_saves_above "$saves" || return 1
        [ "$(redis_persist_field rdb_last_bgsave_status)" = ok ]
        return
        ;;
    esac
    warn "BGSAVE: $reply (attempt $attempt)"
  done
  return 1
}

# compose_command — sets COMPOSE to the Compose here: v2 (`docker compose`) when the
# docker CLI has it, else v1 (`docker-compose`, Debian's package). Fails without either.
compose_command() {
  if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif docker-compose version >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
  else
    return 1
  fi
}
