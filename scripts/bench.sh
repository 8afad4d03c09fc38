#!/usr/bin/env bash
# The intakeq-fs benchmark: builds the release binary, starts the fake IntakeQ
# (`intakeq-fs mock-server`) on loopback, fills it through its /_admin/ API, mounts it
# and measures, side by side in one run, against curl on the same server, a tmpfs
# file and rclone (mount of `rclone serve webdav`):
#   1 cold sequential read (1f: vs its floor, curl saving to disk)   2 warm re-read
#   3 copy in (upload; 3f: vs its floor, a local staged and fsynced copy, then curl -F;
#     3t: through a 32 MiB/s upload link)
#   4 time to first 4 KiB on a throttled link       5 ls -l of a 2,000-file client
#   6 peak RSS of the daemon  7 API calls per workload vs minimum   8 rclone peer
# and prints one markdown table (paste it into docs/BENCHMARKS.md).
#
# Usage: scripts/bench.sh                 full sizes (256 MiB reads, 1 GiB RSS copies)
#        BENCH_QUICK=1 scripts/bench.sh   small sizes, for a smoke test
# Optional: BENCH_REPS (default 3: each timing is the best of that many runs),
#           BENCH_RSS_CACHE_MIB (default 64: --cache-size of the RSS mounts),
#           BENCH_CONTENTION=1 (then also scripts/bench-contention.sh as a last
#           section: browsing during a batch copy at the real 10/min, about 7 minutes).
# Timings are reported, never asserted: the script exits 0 whatever they are.
# Everything runs on 127.0.0.1; temp files live under $TMPDIR and /dev/shm and are
# removed on exit (also on failure and Ctrl-C), mounts are detached, servers killed.
set -Eeuo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

MIB=$((1 << 20))
QUICK="${BENCH_QUICK:-0}"
REPS="${BENCH_REPS:-3}"
RSS_CACHE_MIB="${BENCH_RSS_CACHE_MIB:-64}"
MAIN_CACHE_MIB=256 # the default --cache-size
if [ "$QUICK" = 1 ]; then
  BIG_MIB=32 UP_MIB=16 THR_MIB=32 HUGE_MIB=128
else
  BIG_MIB=256 UP_MIB=64 THR_MIB=128 HUGE_MIB=1024
fi
THR_BPS=33554432 # 32 MiB/s
BULK_N=2000
BULK_SIZE=1024
LRU_FILE_MIB=8
LRU_N=$((HUGE_MIB / LRU_FILE_MIB))

# Client ids (the --demo data set uses 1001..1005 and folders fo-intake, fo-insurance,
# fo-consent; the admin API has no call to add folders, so the demo's are used).
C_READ=7001 C_BULK=7002 C_WORK=7003 C_FIND=7004 C_UP=7005 C_RSS=7006 C_LRU=7007

# ----------------------------------------------------------------- clean-up
WORK=""
SHM=""
MOUNTS=()
PIDS=()

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM ERR
  local m p i
  for m in "${MOUNTS[@]}"; do
    if mountpoint -q "$m" 2>/dev/null; then
      fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    fi
  done
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null
  done
  for p in "${PIDS[@]}"; do
    for i in $(seq 50); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  # --one-file-system: never descend into a mount that failed to detach.
  [ -n "$WORK" ] && rm -rf --one-file-system "$WORK"
  [ -n "$SHM" ] && rm -rf --one-file-system "$SHM"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap '[ "$BASHPID" = "$$" ] && echo "bench: failed (line $LINENO): $BASH_COMMAND" >&2' ERR

die() {
  echo "bench: $*" >&2
  exit 1
}
LOADS=()
log() {
  LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
  echo "bench: $*" >&2
}

# ----------------------------------------------------------------- helpers
now() { date +%s.%N; }
# Seconds taken by a command (its output discarded).
timed() {
  local t0 t1
  t0=$(now)
  "$@" >/dev/null || { echo "bench: failed: $*" >&2; return 1; }
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}
min_of() { printf '%s\n' "$@" | sort -g | head -n 1; }
# pair_ratio "A1 A2 ..." "B1 B2 ...": the median of the per-run ratios Ai / Bi (run i of
# each side taken one after the other), steadier than the ratio of the two bests when
# one side has a slow run; the goal verdicts of rows 1 and 3 use it.
pair_ratio() {
  paste -d' ' <(printf '%s\n' $1) <(printf '%s\n' $2) | awk '$2 > 0 { print $1 / $2 }' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { if (b > 0) printf f, a / b; else print "n/a" }'; }
mibps() { awk -v m="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.0f MiB/s", m / t; else print "n/a" }'; }
ms() { awk -v t="$1" 'BEGIN { printf (t < 0.01 ? "%.1f ms" : "%.0f ms"), t * 1000 }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
verdict() { if le "$1" "$2"; then echo "met"; else echo "NOT met"; fi; }

DROPPED="no (not root)"
drop_caches() {
  sync
  if [ "$(id -u)" -eq 0 ] && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    DROPPED="yes"
  elif [ "$(id -u)" -eq 0 ]; then
    DROPPED="no (write to /proc/sys/vm/drop_caches refused)"
  fi
  return 0
}

# The fake's key is not a secret (a random string for this run only, also on the
# mock-server's argv, which the fake accepts); curl still gets it from a header file.
curl_api() { curl -sS -f --noproxy '*' -H @"$WORK/auth.hdr" "$@"; }
admin_post() {
  curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" -X POST -H 'Content-Type: application/json' -d "$2" "$ADMIN/$1"
}
add_client() { admin_post client "{\"id\":$1,\"first_name\":\"Bench\",\"last_name\":\"$2\"}" >/dev/null; }
# add_file CLIENT NAME SIZE [FOLDER_ID] -> prints the new file's id
add_file() {
  local folder=""
  [ -n "${4:-}" ] && folder=",\"folder_id\":\"$4\""
  admin_post file "{\"client_id\":$1,\"name\":\"$2\",\"size\":$3$folder}" |
    sed -n 's/.*"Id":"\([^"]*\)".*/\1/p'
}
delete_file() { curl_api -X DELETE -o /dev/null "$BASE/files/$1" || true; }
# Delete every file of client $1 on the server (ids from the uncounted admin listing).
delete_all_of() {
  local id
  for id in $(curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" "$ADMIN/files?clientId=$1" | grep -o '"Id":"[^"]*"' | cut -d'"' -f4); do
    delete_file "$id"
  done
}
reset_counts() { curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" -X POST "$ADMIN/reset-counts" >/dev/null; }
# API calls since the last reset, from the fake's counters: "N (endpoint n, ...)"
calls() {
  local json total detail
  json=$(curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" "$ADMIN/counts")
  total=$(printf '%s' "$json" | grep -o '"total":[0-9]*' | cut -d: -f2)
  detail=$(printf '%s' "$json" | tr -d '{}"' | tr ',' '\n' | grep -v '^total:' |
    awk -F: '$2 > 0 { printf "%s%s %s", sep, $1, $2; sep = ", " }')
  if [ -n "$detail" ]; then echo "$total ($detail)"; else echo "$total"; fi
}
calls_total() { echo "${1%% *}"; }
set_bandwidth() { admin_post bandwidth "{\"bytes_per_sec\":$1}" >/dev/null; }
set_upload_bandwidth() { admin_post bandwidth "{\"bytes_per_sec\":null,\"upload_bytes_per_sec\":$1}" >/dev/null; }

wait_mounted() { # MOUNTPOINT PID LOGFILE
  local i
  for i in $(seq 300); do
    mountpoint -q "$1" && return 0
    if ! kill -0 "$2" 2>/dev/null; then
      tail -n 20 "$3" >&2 || true
      die "the mount at $1 exited before it was ready"
    fi
    sleep 0.1
  done
  tail -n 20 "$3" >&2 || true
  die "no mount at $1 after 30 s"
}

# start_mount NAME CACHE_MIB [VAR=VALUE...]: mounts intakeq-fs at $WORK/NAME (the
# key in its environment, never on argv; extra variables too); sets MNT and MPID.
start_mount() {
  local name=$1 cache=$2
  shift 2
  MNT="$WORK/$name"
  # Each mount keeps its listings apart: the bench adds files through the admin API
  # between mounts, which a kept listing (trusted for --metadata-ttl) would not show.
  mkdir -p "$MNT" "$WORK/$name.spool" "$WORK/$name.cache"
  env INTAKEQ_API_KEY="$KEY" "$@" target/release/intakeq-fs mount "$MNT" --base-url "$BASE" \
    --rate-limit 100000 --daily-limit 1000000 --cache-size "$cache" \
    --spool-dir "$WORK/$name.spool" --cache-dir "$WORK/$name.cache" \
    --listings-dir "$WORK/$name.listings" \
    --log-file "$WORK/$name.log" --foreground &
  MPID=$!
  PIDS+=("$MPID")
  MOUNTS+=("$MNT")
  wait_mounted "$MNT" "$MPID" "$WORK/$name.log"
}

# Drop a reaped process / detached mount from what the clean-up handles, so it never
# signals a process id the system may have reused.
forget() { # PID MOUNTPOINT
  local keep=() x
  for x in "${PIDS[@]}"; do [ "$x" = "$1" ] || keep+=("$x"); done
  PIDS=("${keep[@]}")
  keep=()
  for x in "${MOUNTS[@]}"; do [ "$x" = "$2" ] || keep+=("$x"); done
  MOUNTS=("${keep[@]}")
}

# stop_mount MOUNTPOINT PID: unmount and wait for the process to exit.
stop_mount() {
  local i
  fusermount3 -u "$1" 2>/dev/null || fusermount3 -u -z "$1" 2>/dev/null || true
  for i in $(seq 100); do
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  kill "$2" 2>/dev/null || true
  wait "$2" 2>/dev/null || true
  forget "$2" "$1"
}

vmhwm_mib() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }

# ----------------------------------------------------------------- set-up
case "$REPS" in '' | *[!0-9]* | 0) die "BENCH_REPS must be a positive integer" ;; esac
case "$RSS_CACHE_MIB" in '' | *[!0-9]* | 0) die "BENCH_RSS_CACHE_MIB must be a positive integer" ;; esac
scripts/setup-deps.sh
command -v curl >/dev/null || die "curl is needed"
command -v fusermount3 >/dev/null || die "fusermount3 (fuse3) is needed"
command -v mountpoint >/dev/null || die "mountpoint (util-linux) is needed"
if [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; then
  die "/dev/fuse is not usable by $(id -un) (Debian's default is mode 0666): run as root or fix its mode"
fi

log "building the release binary"
cargo build --release --locked

WORK=$(mktemp -d "${TMPDIR:-/tmp}/intakeq-bench.XXXXXX")
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  SHM=$(mktemp -d /dev/shm/intakeq-bench.XXXXXX)
else
  SHM=$(mktemp -d "${TMPDIR:-/tmp}/intakeq-bench-shm.XXXXXX")
fi
chmod 700 "$WORK" "$SHM"

KEY=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
(umask 077 && printf 'X-Auth-Key: %s\n' "$KEY" >"$WORK/auth.hdr")

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "starting the fake IntakeQ (load average before: $LOAD_BEFORE)"
target/release/intakeq-fs mock-server --listen 127.0.0.1:0 --api-key "$KEY" --demo \
  >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
BASE=""
for _ in $(seq 100); do
  BASE=$(head -n 1 "$WORK/server.out" 2>/dev/null || true)
  [ -n "$BASE" ] && [ "$(wc -l <"$WORK/server.out")" -ge 2 ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || die "the mock server exited: $(cat "$WORK/server.log")"
  sleep 0.1
done
[ -n "$BASE" ] || die "the mock server did not print its address"
BASE=${BASE%/}                      # http://127.0.0.1:PORT/api/v1
ADMIN="${BASE%/api/v1}/_admin"      # http://127.0.0.1:PORT/_admin
# Line 2 is the header /_admin/ needs; curl reads it from the file, never from argv.
ADMIN_HDR="$WORK/admin.hdr"
(umask 077 && sed -n 2p "$WORK/server.out" >"$ADMIN_HDR")
log "fake IntakeQ at $BASE"

log "populating: ${REPS} x ${BIG_MIB} MiB, $((REPS + 1)) x ${THR_MIB} MiB, a ${BULK_N}-file client, workload clients"
add_client "$C_READ" Reads
COLD_IDS=()
for r in $(seq "$REPS"); do
  COLD_IDS+=("$(add_file "$C_READ" "cold-$r.bin" $((BIG_MIB * MIB)))")
done
THR_IDS=()
for r in $(seq "$REPS"); do
  THR_IDS+=("$(add_file "$C_READ" "thr-$r.bin" $((THR_MIB * MIB)))")
done
THR_FULL_ID=$(add_file "$C_READ" "thr-full.bin" $((THR_MIB * MIB)))
admin_post bulk-client "{\"client_id\":$C_BULK,\"n\":$BULK_N,\"size\":$BULK_SIZE}" >/dev/null
add_client "$C_WORK" Work
WORK_N=0
for i in $(seq -w 1 16); do add_file "$C_WORK" "doc-$i.bin" 262144 >/dev/null; WORK_N=$((WORK_N + 1)); done
for i in 1 2 3 4; do add_file "$C_WORK" "intake-$i.pdf" 262144 fo-intake >/dev/null; WORK_N=$((WORK_N + 1)); done
for i in 1 2 3 4; do add_file "$C_WORK" "card-$i.png" 262144 fo-insurance >/dev/null; WORK_N=$((WORK_N + 1)); done
add_client "$C_FIND" Find
for i in $(seq -w 1 12); do add_file "$C_FIND" "note-$i.txt" 65536 >/dev/null; done
for i in 1 2 3 4; do add_file "$C_FIND" "intake-$i.pdf" 65536 fo-intake >/dev/null; done
for i in 1 2 3 4; do add_file "$C_FIND" "consent-$i.pdf" 65536 fo-consent >/dev/null; done
add_client "$C_UP" Uploads

log "generating local files"
head -c $((UP_MIB * MIB)) /dev/urandom >"$WORK/up.bin"
head -c $((1 * MIB)) /dev/urandom >"$WORK/small.bin"

# ----------------------------------------------------------------- main mount
log "mounting (cache ${MAIN_CACHE_MIB} MiB)"
start_mount mnt "$MAIN_CACHE_MIB"
MAIN_MNT=$MNT MAIN_PID=$MPID
CL="$MAIN_MNT/clients"
ls -l "$CL/$C_READ" >/dev/null # listing cached: the reads below time data, not metadata

# 1. cold sequential read vs curl ------------------------------------------
log "1. cold sequential read (${BIG_MIB} MiB) vs curl"
T_MOUNT=() T_CURL=() T_KEEP=()
COLD_READ_CALLS=""
for r in $(seq "$REPS"); do
  id=${COLD_IDS[$((r - 1))]}
  drop_caches
  reset_counts
  T_MOUNT+=("$(timed dd if="$CL/$C_READ/cold-$r.bin" of=/dev/null bs=1M status=none)")
  [ -n "$COLD_READ_CALLS" ] || COLD_READ_CALLS=$(calls)
  drop_caches
  T_CURL+=("$(timed curl_api -o /dev/null "$BASE/files/$id")")
  # The floor of a download that is kept (row 1f): curl saving the same bytes to a
  # file on the disk the mount's cache is on ($WORK holds the cache directory).
  drop_caches
  T_KEEP+=("$(timed curl_api -o "$WORK/keep.bin" "$BASE/files/$id")")
  rm -f "$WORK/keep.bin"
done
cold_m=$(min_of "${T_MOUNT[@]}") cold_c=$(min_of "${T_CURL[@]}")
cold_ratio=$(ratio "$cold_m" "$cold_c")
cold_pairs=$(pair_ratio "${T_MOUNT[*]}" "${T_CURL[*]}")
row 1 "cold sequential read, ${BIG_MIB} MiB (dd bs=1M) vs curl GET" \
  "${cold_m} s ($(mibps "$BIG_MIB" "$cold_m"))" "curl ${cold_c} s ($(mibps "$BIG_MIB" "$cold_c"))" \
  "$cold_ratio (run by run: median $cold_pairs)" "≤ 1.3: $(verdict "$cold_pairs" 1.3)"
log "   mount ${T_MOUNT[*]} s; curl ${T_CURL[*]} s"
keep_c=$(min_of "${T_KEEP[@]}")
row 1f "row 1's mount read vs its floor: curl GET saving the file to the cache's disk (curl -o)" \
  "${cold_m} s" "curl -o file ${keep_c} s ($(mibps "$BIG_MIB" "$keep_c"))" \
  "$(ratio "$cold_m" "$keep_c") (run by run: median $(pair_ratio "${T_MOUNT[*]}" "${T_KEEP[*]}"))" \
  "— (reported: a kept download's floor)"
log "   curl -o file ${T_KEEP[*]} s"

# 2. warm re-read vs tmpfs ---------------------------------------------------
LAST=$REPS
LAST_ID=${COLD_IDS[$((LAST - 1))]}
log "2. warm re-read vs tmpfs"
curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" -o "$SHM/big.bin" "$ADMIN/file/$LAST_ID"
if cmp -s "$SHM/big.bin" "$CL/$C_READ/cold-$LAST.bin"; then DATA_CHECK="identical"; else DATA_CHECK="DIFFERENT"; fi
T_WARM=() T_SHM=()
reset_counts
for _ in $(seq "$REPS"); do
  T_WARM+=("$(timed dd if="$CL/$C_READ/cold-$LAST.bin" of=/dev/null bs=1M status=none)")
  T_SHM+=("$(timed dd if="$SHM/big.bin" of=/dev/null bs=1M status=none)")
done
REREAD_CALLS=$(calls)
warm_m=$(min_of "${T_WARM[@]}") warm_s=$(min_of "${T_SHM[@]}")
row 2 "warm re-read of the same ${BIG_MIB} MiB vs a tmpfs (/dev/shm) file" \
  "${warm_m} s ($(mibps "$BIG_MIB" "$warm_m"))" "tmpfs ${warm_s} s ($(mibps "$BIG_MIB" "$warm_s"))" \
  "$(ratio "$warm_m" "$warm_s")" "— (reported)"
log "   bytes through the mount vs the server's: $DATA_CHECK"
for id in "${COLD_IDS[@]:0:$((REPS - 1))}"; do delete_file "$id"; done

# 3. copy in vs curl -F -----------------------------------------------------
log "3. cp of ${UP_MIB} MiB into the mount vs curl -F upload"
ls -l "$CL/$C_UP" >/dev/null
T_CP=() T_UP=() T_STAGED=()
CP_IN_CALLS=""
# The floor of a crash-safe staged upload (row 3f): copy to a file on the disk the
# mount's spool is on, fsync it (coreutils `sync FILE`), then the same curl -F.
staged_upload() {
  cp "$WORK/up.bin" "$WORK/staged.bin" && sync "$WORK/staged.bin" &&
    curl_api -H 'Expect:' -o /dev/null -F "file=@$WORK/staged.bin;filename=$1" "$BASE/files/$C_UP"
}
for r in $(seq "$REPS"); do
  reset_counts
  T_CP+=("$(timed cp "$WORK/up.bin" "$CL/$C_UP/cp-$r.bin")")
  [ -n "$CP_IN_CALLS" ] || CP_IN_CALLS=$(calls)
  T_UP+=("$(timed curl_api -H 'Expect:' -o /dev/null -F "file=@$WORK/up.bin;filename=curl-$r.bin" "$BASE/files/$C_UP")")
  T_STAGED+=("$(timed staged_upload "staged-$r.bin")")
  rm -f "$WORK/staged.bin"
done
cp_m=$(min_of "${T_CP[@]}") cp_c=$(min_of "${T_UP[@]}")
cp_ratio=$(ratio "$cp_m" "$cp_c")
cp_pairs=$(pair_ratio "${T_CP[*]}" "${T_UP[*]}")
row 3 "cp of a ${UP_MIB} MiB local file into a client dir vs curl -F upload" \
  "${cp_m} s ($(mibps "$UP_MIB" "$cp_m"))" "curl ${cp_c} s ($(mibps "$UP_MIB" "$cp_c"))" \
  "$cp_ratio (run by run: median $cp_pairs)" "≤ 1.3: $(verdict "$cp_pairs" 1.3)"
log "   mount ${T_CP[*]} s; curl ${T_UP[*]} s"
staged_c=$(min_of "${T_STAGED[@]}")
row 3f "row 3's cp vs its floor: cp to the spool's disk, fsync, then curl -F" \
  "${cp_m} s" "cp + fsync + curl ${staged_c} s" \
  "$(ratio "$cp_m" "$staged_c") (run by run: median $(pair_ratio "${T_CP[*]}" "${T_STAGED[*]}"))" \
  "— (reported: a crash-safe staged upload's floor)"
log "   cp + fsync + curl ${T_STAGED[*]} s"
UP_CHECK="uploaded bytes: not checked"
up_id=$(curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" "$ADMIN/files?clientId=$C_UP" | tr '{' '\n' | grep '"FileName":"cp-1.bin"' |
  sed -n 's/.*"Id":"\([^"]*\)".*/\1/p' | head -n 1)
if [ -n "$up_id" ]; then
  if curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" "$ADMIN/file/$up_id" | cmp -s - "$WORK/up.bin"; then
    UP_CHECK="uploaded bytes: identical"
  else
    UP_CHECK="uploaded bytes: DIFFERENT"
  fi
fi
log "   $UP_CHECK"
# The mount's batch listing confirms its uploads 2 s after the last one: let it, before
# the files are removed behind its back (it would take them for lost and send them again).
sleep 3
delete_all_of "$C_UP"

# 3t. the same copy in through a 32 MiB/s upload link ------------------------
log "3t. cp of ${UP_MIB} MiB into the mount vs curl -F, uploads at 32 MiB/s"
set_upload_bandwidth "$THR_BPS"
T_CPT=() T_UPT=()
for r in $(seq "$REPS"); do
  T_CPT+=("$(timed cp "$WORK/up.bin" "$CL/$C_UP/cpt-$r.bin")")
  T_UPT+=("$(timed curl_api -H 'Expect:' -o /dev/null -F "file=@$WORK/up.bin;filename=curlt-$r.bin" "$BASE/files/$C_UP")")
done
set_upload_bandwidth null
cpt_m=$(min_of "${T_CPT[@]}") cpt_c=$(min_of "${T_UPT[@]}")
row 3t "row 3 through a 32 MiB/s upload link (the fake reads upload bodies no faster)" \
  "${cpt_m} s" "curl ${cpt_c} s" \
  "$(ratio "$cpt_m" "$cpt_c") (run by run: median $(pair_ratio "${T_CPT[*]}" "${T_UPT[*]}"))" "— (reported)"
log "   mount ${T_CPT[*]} s; curl ${T_UPT[*]} s"
sleep 3 # as after row 3
delete_all_of "$C_UP"

# 4. time to first 4 KiB on a 32 MiB/s link ----------------------------------
log "4. time to first 4 KiB of ${THR_MIB} MiB at 32 MiB/s"
set_bandwidth "$THR_BPS"
T_HEAD=()
for r in $(seq "$REPS"); do
  T_HEAD+=("$(timed head -c 4096 "$CL/$C_READ/thr-$r.bin")")
done
# Whole file, through the mount (a fresh id) and with curl (which also reports its
# own time to first byte; the fake has no Range support, so curl cannot stop early).
T_FULL_MOUNT=$(timed dd if="$CL/$C_READ/thr-full.bin" of=/dev/null bs=1M status=none)
T_FULL_CURL=$(timed curl_api -o /dev/null -w '%{stderr}%{time_starttransfer}' "$BASE/files/$THR_FULL_ID" \
  2>"$WORK/curl-ttfb")
cttfb=$(awk '{ printf "%.4f", $1 }' "$WORK/curl-ttfb")
set_bandwidth null
head_m=$(min_of "${T_HEAD[@]}")
row 4 "first 4 KiB of a ${THR_MIB} MiB file at 32 MiB/s (head -c 4096) vs the whole file with curl" \
  "$(ms "$head_m")" "curl whole file ${T_FULL_CURL} s" "$(ratio "$head_m" "$T_FULL_CURL" %.4f)" \
  "— (first bytes long before the whole file)"
row 4b "whole ${THR_MIB} MiB file at 32 MiB/s: mount (dd) vs curl; curl's own time to first byte" \
  "${T_FULL_MOUNT} s" "curl ${T_FULL_CURL} s (first byte $(ms "$cttfb"))" \
  "$(ratio "$T_FULL_MOUNT" "$T_FULL_CURL")" "— (reported)"
log "   head: ${T_HEAD[*]} s; whole file: mount ${T_FULL_MOUNT} s, curl ${T_FULL_CURL} s"

# 5. ls -l of a 2,000-file client ---------------------------------------------
log "5. ls -l of a ${BULK_N}-file client, cold and warm"
reset_counts
T_LS_COLD=$(timed ls -l "$CL/$C_BULK")
LS_COLD_CALLS=$(calls)
reset_counts
T_LS_WARM=$(timed ls -l "$CL/$C_BULK")
LS_WARM_CALLS=$(calls)
nls=$(find "$CL/$C_BULK" -maxdepth 1 -type f | wc -l)
row 5 "ls -l of a ${BULK_N}-file client, cold ($nls entries)" "$(ms "$T_LS_COLD")" \
  "API calls: $LS_COLD_CALLS" "—" "min 1 call"
row 5b "ls -l of the same client, warm" "$(ms "$T_LS_WARM")" "API calls: $LS_WARM_CALLS" "—" "min 0 calls"

# 7. API calls per workload -------------------------------------------------
log "7. API calls per workload"
api_row() { # WHAT MEASURED MIN
  local n v
  n=$(calls_total "$2")
  if [ "$n" -le "$3" ]; then v=OK; else v=MISS; fi
  ROWS+=("| 7 | API calls: $1 | $2 | — | — | min $3: $v |")
}
api_row "ls -l of a ${BULK_N}-file client, cold (folders cached at mount)" "$LS_COLD_CALLS" 1
api_row "ls -l of the same client, warm" "$LS_WARM_CALLS" 0
reset_counts
find "$CL/$C_FIND" >/dev/null
api_row "find over a client (20 files, 3 folders), cold" "$(calls)" 1
reset_counts
find "$CL/$C_FIND" >/dev/null
api_row "find over the same client, warm" "$(calls)" 0
reset_counts
cp -r "$CL/$C_WORK" "$WORK/cp-out"
api_row "cp -r of a client out (${WORK_N} files: 16 top, 8 in 2 folders), cold" "$(calls)" $((1 + WORK_N))
n_out=$(find "$WORK/cp-out" -type f | wc -l)
[ "$n_out" -eq "$WORK_N" ] || log "   WARNING: cp -r copied $n_out files, expected $WORK_N"
api_row "first read of a file (listing cached): ${BIG_MIB} MiB cold read of row 1" "$COLD_READ_CALLS" 1
reset_counts
cat "$CL/$C_WORK/doc-03.bin" >/dev/null
api_row "re-reading a file (cat after cp -r read it)" "$(calls)" 0
api_row "re-reading ${BIG_MIB} MiB ${REPS} times (row 2)" "$REREAD_CALLS" 0
# The listing that learns a new file's id comes CONFIRM_SETTLE (2 s) after a client's
# last upload, off the close path, one per batch: wait it out between rows.
settle() { sleep 3; }
settle
reset_counts
cp "$WORK/small.bin" "$CL/$C_WORK/new.bin"
api_row "cp of a new 1 MiB file in, until cp returns (the upload)" "$(calls)" 1
settle
api_row "the same, with the listing that learns its id (after the batch settles)" "$(calls)" 2
api_row "cp of a new ${UP_MIB} MiB file in (row 3, first run), until cp returns" "$CP_IN_CALLS" 1
mkdir -p "$WORK/batch"
for i in $(seq -w 1 30); do head -c 4096 /dev/urandom >"$WORK/batch/scan-$i.pdf"; done
reset_counts
cp "$WORK/batch/"* "$CL/$C_WORK/"
settle
api_row "cp of 30 new files into a client, with the batch's one listing" "$(calls)" 31
reset_counts
rm "$CL/$C_WORK/doc-02.bin"
api_row "rm of a listed file" "$(calls)" 1
reset_counts
mv "$CL/$C_WORK/doc-04.bin" "$CL/$C_WORK/doc-04-renamed.bin"
api_row "mv within a client's top level, content cached (upload + delete)" "$(calls)" 2
settle
reset_counts
mv "$CL/$C_FIND/note-01.txt" "$CL/$C_FIND/note-01-renamed.txt"
api_row "mv within a client's top level, content not cached (+ 1 download)" "$(calls)" 3
settle
# What an SMB desk's programs do through a Samba gateway (issue 22), done locally the
# way smbd does it; each with the listing that learns the new file's id.
reset_counts
python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDWR); os.ftruncate(fd, 0); os.write(fd, b"new version\n"); os.close(fd)' \
  "$CL/$C_FIND/note-02.txt"
settle
api_row "overwrite as smbd does it (O_RDWR, ftruncate, write), not cached: no download" "$(calls)" 3
reset_counts
(cd "$CL/$C_FIND" && echo owner >'~$note-03.txt' && printf 'word bytes' >'~WRL0001.tmp' &&
  mv note-03.txt '~WRL0002.tmp' && mv '~WRL0001.tmp' note-03.txt && rm '~WRL0002.tmp' '~$note-03.txt')
settle
api_row "MS Office save (~\$ owner file, ~WRL temp, original set aside, renamed over, deleted)" "$(calls)" 3
reset_counts
: >"$CL/$C_FIND/New Text Document.txt"
sleep 2
mv "$CL/$C_FIND/New Text Document.txt" "$CL/$C_FIND/phone log.txt"
settle
api_row "Explorer's New > Text Document, named 2 s later" "$(calls)" 2
# vim's :w twice within CONFIRM_SETTLE: the second save before the first is listed.
reset_counts
printf 'first save\n' >"$CL/$C_FIND/note-05.txt"
printf 'first save\nsecond save\n' >"$CL/$C_FIND/note-05.txt"
settle
api_row "two saves of one file in a row, the second before the first is listed (vim's :w twice)" "$(calls)" 5

# Diagnostics of the main mount before it goes.
MAIN_FDS=$(find "/proc/$MAIN_PID/fd" -mindepth 1 2>/dev/null | wc -l)
MAIN_DELETED=0 MAIN_DELETED_MIB=0
for f in "/proc/$MAIN_PID/fd"/*; do
  case "$(readlink "$f" 2>/dev/null)" in
    "$WORK/mnt.cache/"*"(deleted)")
      MAIN_DELETED=$((MAIN_DELETED + 1))
      MAIN_DELETED_MIB=$((MAIN_DELETED_MIB + $(stat -L -c %s "$f") / MIB))
      ;;
  esac
done
MAIN_HWM=$(vmhwm_mib "$MAIN_PID")
stop_mount "$MAIN_MNT" "$MAIN_PID"
for id in "${COLD_IDS[$((REPS - 1))]}" "${THR_IDS[@]}" "$THR_FULL_ID"; do delete_file "$id"; done

# 6. peak RSS -------------------------------------------------------------------
log "6. peak RSS during ${HUGE_MIB} MiB copies (fresh mount each, --cache-size ${RSS_CACHE_MIB})"
# (Data is created just before it is needed and deleted after, to keep the fake
# server's memory near 2 GiB at full size.)
add_client "$C_RSS" Rss
add_client "$C_LRU" Lru
goal=$((RSS_CACHE_MIB + 64))

start_mount rss-idle "$RSS_CACHE_MIB"
ls -l "$MNT/clients/$C_RSS" >/dev/null
IDLE_HWM=$(vmhwm_mib "$MPID")
stop_mount "$MNT" "$MPID"

HUGE_ID=$(add_file "$C_RSS" huge.bin $((HUGE_MIB * MIB)))
start_mount rss-out "$RSS_CACHE_MIB"
T_OUT=$(timed cp "$MNT/clients/$C_RSS/huge.bin" "$WORK/huge-out.bin")
OUT_HWM=$(vmhwm_mib "$MPID")
stop_mount "$MNT" "$MPID"
rm -f "$WORK/huge-out.bin"
delete_file "$HUGE_ID"

LRU_IDS=()
for i in $(seq -w 1 "$LRU_N"); do LRU_IDS+=("$(add_file "$C_LRU" "part-$i.bin" $((LRU_FILE_MIB * MIB)))"); done

start_mount rss-lru "$RSS_CACHE_MIB"
T_LRU=$(timed cp -r "$MNT/clients/$C_LRU" "$WORK/lru-out")
LRU_HWM=$(vmhwm_mib "$MPID")
stop_mount "$MNT" "$MPID"
rm -rf "$WORK/lru-out"

# Diagnostic: the same copy with glibc's mmap threshold fixed at 1 MiB (the env
# equivalent of mallopt(M_MMAP_THRESHOLD)), to tell cache accounting from allocator
# retention.
start_mount rss-lru-mmap "$RSS_CACHE_MIB" MALLOC_MMAP_THRESHOLD_=1048576
T_LRU2=$(timed cp -r "$MNT/clients/$C_LRU" "$WORK/lru-out")
LRU2_HWM=$(vmhwm_mib "$MPID")
stop_mount "$MNT" "$MPID"
rm -rf "$WORK/lru-out"

for id in "${LRU_IDS[@]}"; do delete_file "$id"; done

head -c $((HUGE_MIB * MIB)) /dev/urandom >"$WORK/huge-in.bin"
start_mount rss-in "$RSS_CACHE_MIB"
ls -l "$MNT/clients/$C_RSS" >/dev/null
T_IN=$(timed cp "$WORK/huge-in.bin" "$MNT/clients/$C_RSS/huge-in.bin")
IN_HWM=$(vmhwm_mib "$MPID")
stop_mount "$MNT" "$MPID"
rm -f "$WORK/huge-in.bin"
delete_all_of "$C_RSS"

row 6 "peak RSS (VmHWM), idle mount after one listing" "${IDLE_HWM} MiB" \
  "budget ${RSS_CACHE_MIB} MiB" "—" "≤ ${goal} MiB: $(verdict "$IDLE_HWM" "$goal")"
row 6b "peak RSS, cp of one ${HUGE_MIB} MiB file out ($(mibps "$HUGE_MIB" "$T_OUT"))" "${OUT_HWM} MiB" \
  "budget ${RSS_CACHE_MIB} MiB" "—" "≤ ${goal} MiB: $(verdict "$OUT_HWM" "$goal")"
row 6c "peak RSS, cp -r of ${LRU_N} x ${LRU_FILE_MIB} MiB files out (memory-cached size, LRU) ($(mibps "$HUGE_MIB" "$T_LRU"))" \
  "${LRU_HWM} MiB" "budget ${RSS_CACHE_MIB} MiB" "—" "≤ ${goal} MiB: $(verdict "$LRU_HWM" "$goal")"
row 6c2 "diagnostic: 6c with MALLOC_MMAP_THRESHOLD_=1048576 in the daemon's environment ($(mibps "$HUGE_MIB" "$T_LRU2"))" \
  "${LRU2_HWM} MiB" "budget ${RSS_CACHE_MIB} MiB" "—" "≤ ${goal} MiB: $(verdict "$LRU2_HWM" "$goal")"
row 6d "peak RSS, cp of one ${HUGE_MIB} MiB file in ($(mibps "$HUGE_MIB" "$T_IN"))" "${IN_HWM} MiB" \
  "budget ${RSS_CACHE_MIB} MiB" "—" "≤ ${goal} MiB: $(verdict "$IN_HWM" "$goal")"

# 8. rclone peer ----------------------------------------------------------------
RCLONE_NOTE=""
if command -v rclone >/dev/null; then
  log "8. rclone mount of rclone serve webdav (same ${BIG_MIB} MiB, from tmpfs)"
  RCLONE_VERSION=$(rclone version 2>/dev/null | sed -n 1p)
  mkdir -p "$SHM/webdav"
  mv "$SHM/big.bin" "$SHM/webdav/big.bin"
  rclone serve webdav "$SHM/webdav" --addr 127.0.0.1:0 --config "$WORK/rclone.conf" --read-only \
    >"$WORK/rclone-serve.log" 2>&1 &
  RS_PID=$!
  PIDS+=("$RS_PID")
  RS_URL=""
  for _ in $(seq 100); do
    RS_URL=$(grep -o 'started on http://[^ ]*' "$WORK/rclone-serve.log" | head -n 1 | sed 's/^started on //' || true)
    [ -n "$RS_URL" ] && break
    kill -0 "$RS_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$RS_URL" ]; then
    RCLONE_NOTE="rclone serve webdav did not start: $(tail -n 3 "$WORK/rclone-serve.log")"
  else
    for mode in full off; do
      rmnt="$WORK/rclone-$mode"
      mkdir -p "$rmnt"
      rclone mount ":webdav,url='$RS_URL':" "$rmnt" --config "$WORK/rclone.conf" --read-only \
        --vfs-cache-mode "$mode" --cache-dir "$WORK/rclone-cache-$mode" --dir-cache-time 1h \
        --log-file "$WORK/rclone-$mode.log" &
      RM_PID=$!
      PIDS+=("$RM_PID")
      MOUNTS+=("$rmnt")
      wait_mounted "$rmnt" "$RM_PID" "$WORK/rclone-$mode.log"
      ls -l "$rmnt" >/dev/null
      drop_caches
      t_cold=$(timed dd if="$rmnt/big.bin" of=/dev/null bs=1M status=none)
      tw=()
      for _ in $(seq "$REPS"); do
        tw+=("$(timed dd if="$rmnt/big.bin" of=/dev/null bs=1M status=none)")
      done
      t_warm=$(min_of "${tw[@]}")
      row "8 ($mode)" "rclone mount --vfs-cache-mode $mode: cold / warm ${BIG_MIB} MiB read" \
        "intakeq-fs ${cold_m} s / ${warm_m} s" \
        "rclone ${t_cold} s ($(mibps "$BIG_MIB" "$t_cold")) / ${t_warm} s ($(mibps "$BIG_MIB" "$t_warm"))" \
        "$(ratio "$cold_m" "$t_cold") / $(ratio "$warm_m" "$t_warm")" "— (ratio < 1: intakeq-fs faster)"
      stop_mount "$rmnt" "$RM_PID"
    done
  fi
  kill "$RS_PID" 2>/dev/null || true
  wait "$RS_PID" 2>/dev/null || true
  forget "$RS_PID" ""
else
  RCLONE_NOTE="rclone is not installed: row 8 skipped (apt-get install rclone)"
fi

# ----------------------------------------------------------------- report
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
SERVER_HWM=$(vmhwm_mib "$SERVER_PID")
LOAD_MAX=$(printf '%s\n' "${LOADS[@]}" | sort -g | tail -n 1)
MEM=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "## intakeq-fs benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "- machine: $(nproc) CPUs (${CPU:-unknown}), $MEM memory, kernel $(uname -r)"
echo "- load average (1/5/15 min): before $LOAD_BEFORE, after $LOAD_AFTER; highest 1-min value seen at a step: $LOAD_MAX (above ~0.5 the machine had other work)"
echo "- sizes: reads ${BIG_MIB} MiB, upload ${UP_MIB} MiB, throttled ${THR_MIB} MiB at 32 MiB/s, RSS copies ${HUGE_MIB} MiB$([ "$QUICK" = 1 ] && echo ' (BENCH_QUICK=1)')"
echo "- timings: best of ${REPS}; page cache dropped before cold reads: $DROPPED"
echo "- main mount --cache-size ${MAIN_CACHE_MIB} MiB; RSS mounts --cache-size ${RSS_CACHE_MIB} MiB; all mounts --rate-limit 100000 --daily-limit 1000000"
echo "- data checks: ${BIG_MIB} MiB read through the mount vs the server's bytes: $DATA_CHECK; $UP_CHECK"
echo "- main mount before unmount: peak RSS ${MAIN_HWM} MiB; ${MAIN_FDS} open fds, ${MAIN_DELETED} of them unlinked cache temp files holding ${MAIN_DELETED_MIB} MiB of disk (kept within --disk-cache-size, default 1024 MiB)"
echo "- the fake server (test data in memory) peaked at ${SERVER_HWM} MiB RSS"
[ -n "${RCLONE_VERSION:-}" ] && echo "- peer: ${RCLONE_VERSION}, serving a tmpfs copy of the same bytes over loopback WebDAV"
[ -n "$RCLONE_NOTE" ] && echo "- $RCLONE_NOTE"
echo
echo "| # | measurement | intakeq-fs | reference | ratio | goal / minimum |"
echo "|---|---|---|---|---|---|"
for s in 1 2 3 4 5 6 7 8; do
  for r in "${ROWS[@]}"; do
    case "$r" in "| $s "* | "| $s"[a-z]*) echo "$r" ;; esac
  done
done

# ----------------------------------------------------------------- contention
# At the real limits (10 requests a minute), so minutes of wall clock: only when asked.
if [ "${BENCH_CONTENTION:-0}" = 1 ]; then
  echo
  echo "## Contention at the default limits (scripts/bench-contention.sh)"
  BENCH_PROFILE=release scripts/bench-contention.sh
fi
