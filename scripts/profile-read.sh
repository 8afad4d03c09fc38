#!/usr/bin/env bash
# Where the daemon's CPU goes on a cold sequential read (issue 10, outcome 4): starts
# the fake IntakeQ on loopback, mounts it, reads BENCH_REPS cold 256 MiB files with
# `dd bs=1M` (page cache dropped before each, as root) while `perf record` samples the
# daemon, and prints one markdown table: the share of the daemon's samples and the CPU
# milliseconds per read spent in each stage of the read path, beside the wall time of
# the mount's read and of curl's GET of a same-sized file (reported, never asserted).
#
# Usage: scripts/profile-read.sh [BINARY]
#   BINARY  the intakeq-fs binary to profile (default: builds target/release/intakeq-fs);
#           pass an older build to profile "before" and "after" in the same conditions.
# Optional: BENCH_REPS (default 3), PROFILE_MIB (default 256).
# Needs root (perf on another process, drop_caches), fuse3, curl and perf (Debian:
# `apt-get install linux-perf`). Temp files under $TMPDIR, removed on exit.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

REPS="${BENCH_REPS:-3}"
MIB="${PROFILE_MIB:-256}"
command -v perf >/dev/null || { echo "profile-read: perf is needed (apt-get install linux-perf)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "profile-read: run as root (perf -p, drop_caches)" >&2; exit 1; }
[ -z "${1:-}" ] || BENCH_BIN=$1
BENCH_PROFILE=release
# shellcheck source=scripts/lib/fake-bench.sh
source scripts/lib/fake-bench.sh
fake_bench_start profile-read
API=${BASE%/}
printf 'X-Auth-Key: %s\n' "$KEY" >"$WORK/auth.hdr"
# The admin API's answer carries the new file's id.
post() { curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" -X POST -H 'Content-Type: application/json' -d "$2" "$ADMIN/$1"; }
post client '{"id":7001,"first_name":"Profile","last_name":"Reads"}' >/dev/null
IDS=()
for r in $(seq $((REPS * 2))); do
  IDS+=("$(post file "{\"client_id\":7001,\"name\":\"cold-$r.bin\",\"size\":$((MIB << 20))}" |
    sed -n 's/.*"Id":"\([^"]*\)".*/\1/p')")
done

W=$WORK
mkdir -p "$W/m"
env INTAKEQ_API_KEY="$KEY" "$BIN" mount "$W/m" --base-url "$API" --rate-limit 100000 \
  --daily-limit 1000000 --spool-dir "$W/spool" --cache-dir "$W/cache" \
  --listings-dir "$W/listings" --log-file "$W/mount.log" --foreground &
MP=$!
PIDS+=("$MP")
MOUNTS+=("$W/m")
for _ in $(seq 100); do mountpoint -q "$W/m" && break; sleep 0.1; done
mountpoint -q "$W/m" || { log "no mount"; exit 1; }
ls -l "$W/m/clients/7001" >/dev/null # the listing is not part of the profile

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

perf record -F 2000 -g -p "$MP" -o "$W/perf.data" 2>"$W/perf.log" &
PERF=$!
sleep 0.5
T_MOUNT=() T_CURL=()
for r in $(seq "$REPS"); do
  drop
  t0=$(now)
  dd if="$W/m/clients/7001/cold-$r.bin" of=/dev/null bs=1M status=none
  T_MOUNT+=("$(secs "$t0" "$(now)")")
done
kill -INT "$PERF"
wait "$PERF" || true
for r in $(seq "$REPS"); do
  drop
  t0=$(now)
  curl -sS -f --noproxy '*' -H @"$W/auth.hdr" -o /dev/null "$API/files/${IDS[$((REPS + r - 1))]}"
  T_CURL+=("$(secs "$t0" "$(now)")")
done

perf report -i "$W/perf.data" --children --sort sym --stdio -g none 2>/dev/null >"$W/report.txt"
SAMPLES=$(perf script -i "$W/perf.data" -F period 2>/dev/null | wc -l)
min() { printf '%s\n' "$@" | sort -g | head -n 1; }

echo "- binary: $BIN; ${REPS} cold reads of ${MIB} MiB; $SAMPLES samples at 2000 Hz"
echo "- wall: mount best $(min "${T_MOUNT[@]}") s (${T_MOUNT[*]}), curl best $(min "${T_CURL[@]}") s (${T_CURL[*]})"
echo
echo "| stage (symbol, with its callees) | share of the daemon's samples | CPU ms per read |"
echo "|---|---|---|"
while IFS='|' read -r pat name; do
  # A stage that took no sample is absent from the report: 0.
  p=$({ grep -E -- "$pat" "$W/report.txt" || true; } | grep -v '^#' | head -n 1 | awk '{ print $1 }' | tr -d '%')
  awk -v p="${p:-0}" -v n="$SAMPLES" -v r="$REPS" -v name="$name" \
    'BEGIN { printf "| %s | %.1f %% | %.0f |\n", name, p, p * n / 100 / 2000 * 1000 / r }'
done <<'STAGES'
tcp_recvmsg$|socket receive (`tcp_recvmsg`)
::append$|cache temp file write (`Entry/Backing::append`)
__libc_pread$|cache temp file read (`pread`)
fuse_dev_write$|FUSE reply into the page cache (`fuse_dev_write`)
memset_avx512_unaligned_erms$|zeroing read buffers (`memset`)
memmove_avx512_unaligned_erms$|user-space copies (`memmove`)
STAGES
awk -v n="$SAMPLES" -v r="$REPS" 'BEGIN { printf "| all of the daemon | 100 %% | %.0f |\n", n / 2000 * 1000 / r }'
