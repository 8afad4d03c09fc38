# Shared by the benchmarks that run at the real limits against the fake IntakeQ
# (scripts/bench-browse.sh, scripts/bench-contention.sh); sourced, never run.
#
# fake_bench_start NAME: installs the clean-up (on every exit: detaches the mounts in
# MOUNTS, kills the processes in PIDS, removes WORK), builds the binary of
# BENCH_PROFILE (default debug; BENCH_BIN=PATH uses that binary instead), creates WORK
# (private, under $TMPDIR) and starts `intakeq-fs mock-server` on a free loopback port.
# Sets BIN, WORK, KEY, BASE (…/api/v1/), ADMIN (…/_admin), ADMIN_HDR (the file holding
# the X-Admin-Token header every /_admin/ request sends). Also defines log, now,
# since START [DECIMALS], admin_post PATH JSON and reset_counts.

WORK=""
MOUNTS=()
PIDS=()
BENCH_NAME="bench"

fake_bench_cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM ERR
  local m p
  for m in "${MOUNTS[@]}"; do
    mountpoint -q "$m" 2>/dev/null && { fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; }
  done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  [ -n "$WORK" ] && rm -rf --one-file-system "$WORK"
  exit "$rc"
}

log() { echo "$BENCH_NAME: $*" >&2; }
now() { date +%s.%N; }
# Seconds since START, with DECIMALS (default 1) decimals.
since() { awk -v a="$1" -v b="$(now)" -v d="${2:-1}" 'BEGIN { printf "%.*f", d, b - a }'; }
admin_post() { curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" -X POST -H 'Content-Type: application/json' -d "$2" "$ADMIN/$1" >/dev/null; }
reset_counts() { curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" -X POST "$ADMIN/reset-counts" >/dev/null; }

fake_bench_start() {
  BENCH_NAME=$1
  trap fake_bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local profile="${BENCH_PROFILE:-debug}"
  scripts/setup-deps.sh >/dev/null
  if [ -n "${BENCH_BIN:-}" ]; then
    BIN=$BENCH_BIN
  elif [ "$profile" = release ]; then
    cargo build --release --locked -q
    BIN="target/release/intakeq-fs"
  else
    cargo build --locked -q
    BIN="target/debug/intakeq-fs"
  fi
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/intakeq-$BENCH_NAME.XXXXXX")
  KEY="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  "$BIN" mock-server --listen 127.0.0.1:0 --api-key "$KEY" >"$WORK/server.url" 2>"$WORK/server.log" &
  PIDS+=($!)
  local _
  for _ in $(seq 100); do [ "$(wc -l <"$WORK/server.url")" -ge 2 ] && break; sleep 0.1; done
  BASE=$(head -n1 "$WORK/server.url")
  [ -n "$BASE" ] || { log "the fake server did not start: $(cat "$WORK/server.log")"; exit 1; }
  ADMIN="${BASE%/api/v1/}/_admin"
  # Line 2 is the header /_admin/ needs; curl reads it from the file, never from argv.
  ADMIN_HDR="$WORK/admin.hdr"
  (umask 077 && sed -n 2p "$WORK/server.url" >"$ADMIN_HDR")
}
