#!/usr/bin/env bash
# Contention at the real limits (issue 10, outcome 5): how long a person waits for a
# client directory, alone and while a batch copy into another client runs. The mount
# uses the defaults (10 requests a minute, 500 a day, --max-wait 120, 20 % of the day
# kept for real work) on the real clock, against the fake IntakeQ on loopback, so the
# run takes about 7 minutes, most of it the copies waiting for the per-minute window.
#
# Steps (API calls and their order from the fake's ordered request log,
# /_admin/requests; times are wall clock around the command):
#   a1  fresh mount, `ls clients/F` of a client never listed: time to first listing
#   a2  `ls -l clients/F` again (warm), then a3 `ls -l` of another never-listed client
#   b1  `cp -r` of a local folder of BENCH_CONTENTION_FILES (24) small files into
#       client A starts (each close is an upload at the limiter); once 3 of its uploads
#       went, `ls clients/B` (never listed): time until B shows, its calls, and what
#       the server saw between the `ls` starting and B's listing (what went ahead)
#   b2  the same while the limiter is saturated: once the copy has stalled on the
#       per-minute window (no upload for 3 s), `ls clients/B2`
#   c   at the copy's next stall (A's confirming listing for the uploads so far, due
#       2 s after the last one, waits at Background; refreshes may be due), `ls
#       clients/C`: time, and whether that background work went ahead of it
#   d   the first copy's time and whole cost: A's uploads and listings, the folders
#       fetched meanwhile, and every grant so far by priority (the mount's debug log
#       of the limiter: request kinds and priorities only, no names)
#   e   the same when the minute's slots free one at a time (as on a mount that has
#       been busy a while): a quiet minute, 10 listings 6 s apart, then a copy of
#       BENCH_CONTENTION_PACED_FILES (12) files into client A2 and, 5 s into it,
#       `ls clients/B3`; e2: that copy's time
# Prints one markdown table. An `ls` that fails (EAGAIN: the listing would have waited
# past --max-wait) is reported in its row as FAILED, not hidden.
#
# Usage: scripts/bench-contention.sh
# Also run as the last section of scripts/bench.sh when BENCH_CONTENTION=1 (it takes
# about 7 minutes of real time, so bench.sh does not run it by default).
# Optional: BENCH_CONTENTION_FILES (default 24: the first copy),
# BENCH_CONTENTION_PACED_FILES (default 12: the copy of step e), BENCH_PROFILE=release
# (default: the debug build, which is fine here: the run is bound by the rate limit,
# not the CPU), BENCH_BIN=PATH (measure that binary instead, e.g. one built before a
# change).
# "A" in the last column is the client being copied into: A in b and c, A2 in e.
set -Eeuo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

NFILES="${BENCH_CONTENTION_FILES:-24}"
NPACED="${BENCH_CONTENTION_PACED_FILES:-12}"
PROFILE="${BENCH_PROFILE:-debug}"
[ -z "${BENCH_BIN:-}" ] || PROFILE="given ($BENCH_BIN)"
for n in "$NFILES" "$NPACED"; do
  case "$n" in '' | *[!0-9]* | 0) echo "BENCH_CONTENTION_FILES and BENCH_CONTENTION_PACED_FILES must be positive integers" >&2; exit 2 ;; esac
done
# Client ids: F and F2 for the first listings, A gets the first copy, B, B2, C are
# browsed during it.
C_F=31001 C_F2=31002 C_A=31003 C_B=31004 C_B2=31005 C_C=31006
# Step e: P1..P9 pace the window, A2 gets the second copy, B3 is browsed.
C_P=(31011 31012 31013 31014 31015 31016 31017 31018 31019) C_A2=31020 C_B3=31021
COPY_CLIENT=$C_A # "A" in the table: the client being copied into

# shellcheck source=scripts/lib/fake-bench.sh
source scripts/lib/fake-bench.sh
fake_bench_start bench-contention
# The request log since the last reset, one "endpoint client" line per request, in order.
requests() {
  { curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" "$ADMIN/requests" && echo; } | tr '{' '\n' |
    sed -n 's/.*"client":\(null\|"\([^"]*\)"\).*"endpoint":"\([a-z_]*\)".*/\3 \2/p'
}
n_requests() { requests | wc -l; }
uploads() { requests | grep -c '^upload ' || true; }
# The calls naming client $2 from line $1 (1-based) of the log on: "N (endpoint n, ...)"
calls_for() {
  requests | tail -n +"$1" | awk -v c="$2" '$2 == c { n[$1]++; t++ }
    END { for (e in n) s = s (s ? ", " : "") e " " n[e]; printf "%d%s", t, (t ? " (" s ")" : "") }'
}
# Requests from line $1 until the listing of client $2: what went ahead of it, e.g.
# "1 upload of A"; "none"; "— (no listing)" if there was none.
ahead_of() {
  requests | tail -n +"$1" | awk -v c="$2" -v a="$COPY_CLIENT" '
    $1 == "list_files" && $2 == c { done = 1; exit }
    $1 == "upload" && $2 == a { n["upload"]++; next }
    $1 == "list_files" && $2 == a { n["listing"]++; next }
    $1 == "list_folders" { n["folders"]++; next }
    { n["other"]++ }
    END {
      if (!done) { print "— (no listing)"; exit }
      split("upload listing folders other", order, " ")
      for (i = 1; i <= 4; i++) {
        k = order[i]
        if (!n[k]) continue
        label = (k == "upload" || k == "listing") ? k (n[k] == 1 ? "" : "s") " of A" : (k == "folders" ? "folders listing" (n[k] == 1 ? "" : "s") : "other")
        s = s (s ? ", " : "") n[k] " " label
      }
      print (s ? s : "none")
    }'
}
# Wait until the copy has sent no upload for 3 s (it waits for the per-minute window;
# A's confirming listing, due 2 s after its last accepted upload, waits too). Prints
# how many uploads went so far; fails if the copy ended first.
wait_stall() {
  local last cur still=0
  last=$(uploads)
  while kill -0 "$CP_PID" 2>/dev/null && [ "$still" -lt 30 ]; do
    sleep 0.1
    cur=$(uploads)
    if [ "$cur" = "$last" ]; then still=$((still + 1)); else still=0 last=$cur; fi
  done
  echo "$((last - up0))"
  kill -0 "$CP_PID" 2>/dev/null
}

for c in $C_F $C_F2 $C_A $C_B $C_B2 $C_C "${C_P[@]}" $C_A2 $C_B3; do
  admin_post bulk-client "{\"client_id\":$c,\"n\":12,\"size\":2048}"
done
SRC="$WORK/batch"
mkdir -p "$SRC"
for i in $(seq -w 1 "$NFILES"); do head -c 4096 /dev/urandom >"$SRC/scan-$i.pdf"; done
SRC2="$WORK/batch2"
mkdir -p "$SRC2"
for i in $(seq -w 1 "$NPACED"); do head -c 4096 /dev/urandom >"$SRC2/form-$i.pdf"; done

MNT="$WORK/mnt"
mkdir -p "$MNT"
# The quota ledger goes under $WORK too: nothing of the run is left behind.
XDG_STATE_HOME="$WORK/state" INTAKEQ_API_KEY="$KEY" INTAKEQ_FS_LOG=info,intakeq_fs::limiter=debug "$BIN" mount "$MNT" --base-url "$BASE" --foreground \
  --spool-dir "$WORK/spool" --cache-dir "$WORK/cache" --listings-dir "$WORK/listings" \
  >>"$WORK/mount.log" 2>&1 &
PIDS+=($!)
MOUNTS+=("$MNT")
for _ in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || { log "mount did not appear"; cat "$WORK/mount.log" >&2; exit 1; }

ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 |"); }
# ls_row STEP WHAT CLIENT [ls flags]: time one `ls` of a client, from the log position now.
ls_row() {
  local step=$1 what=$2 c=$3 flags=${4:-} start t out
  start=$(($(n_requests) + 1))
  t=$(now)
  # shellcheck disable=SC2086 # flags is empty or one word
  if out=$(ls $flags "$MNT/clients/$c" 2>&1); then out="$(echo "$out" | grep -c .) entries"; else out="FAILED: ${out##*: }"; fi
  row "$step" "$what ($out)" "$(since "$t" 2) s" "$(calls_for "$start" "$c")" "$(ahead_of "$start" "$c")"
}

# a: time to first listing --------------------------------------------------------
reset_counts
ls_row a1 "\`ls clients/$C_F\`, never listed, fresh mount" "$C_F"
ls_row a2 "\`ls -l clients/$C_F\` again (warm)" "$C_F" -l
ls_row a3 "\`ls -l clients/$C_F2\`, never listed" "$C_F2" -l
ls "$MNT/clients/$C_A" >/dev/null # A's listing, needed to create files in it

# b: browsing while a batch copies into another client ---------------------------
log "cp -r of $NFILES files into client $C_A (minutes at 10 requests a minute)"
T_CP=$(now)
( cp -r "$SRC/." "$MNT/clients/$C_A/" 2>"$WORK/cp.err"; echo $? >"$WORK/cp.rc"; date +%s.%N >"$WORK/cp.end" ) &
CP_PID=$!
PIDS+=("$CP_PID")
up0=$(uploads)
while [ $(($(uploads) - up0)) -lt 3 ] && kill -0 "$CP_PID" 2>/dev/null; do sleep 0.05; done
ls_row b1 "after 3 of A's uploads, \`ls clients/$C_B\` (never listed)" "$C_B"

# Saturated: the copy waits for the window.
if sent=$(wait_stall); then
  ls_row b2 "the copy stalled on the spent minute ($sent of $NFILES sent), \`ls clients/$C_B2\` (never listed)" "$C_B2"
else
  row b2 "the copy finished before the window was spent: not measured" "—" "—" "—"
fi
# The next stall: A's confirming listing (Background) for the uploads so far is due and
# waiting, refreshes may be due; a third client is opened.
if sent=$(wait_stall); then
  ls_row c "the copy's next stall ($sent of $NFILES sent; A's confirming listing waiting), \`ls clients/$C_C\` (never listed)" "$C_C"
else
  row c "the copy finished before a second stall: not measured" "—" "—" "—"
fi

wait "$CP_PID" || true
cp_rc=$(cat "$WORK/cp.rc")
cp_time=$(awk -v a="$T_CP" -v b="$(cat "$WORK/cp.end")" 'BEGIN { printf "%.1f", b - a }')

# d: the batch's confirming listing (a listing of A after A's last upload) -----------
while ! requests | awk -v a="$C_A" '$1 == "upload" && $2 == a { up = NR } $1 == "list_files" && $2 == a { l = NR } END { exit !(l > up) }'; do
  if awk -v a="$T_CP" -v b="$(now)" 'BEGIN { exit !(b - a > 400) }'; then break; fi
  sleep 0.5
done
by_prio=$(grep -o ': granted at [A-Za-z]*' "$WORK/mount.log" | awk '{ n[$NF]++ } END { for (p in n) s = s (s ? ", " : "") p " " n[p]; print s }')
row d "the copy: $NFILES files, cp exit $cp_rc after $cp_time s; A listed after its last upload $(since "$T_CP" 2) s after the copy started" \
  "—" "$(uploads) uploads of A, $(requests | grep -c "^list_files $C_A\$" || true) listings of A (1 before the copy), $(requests | grep -c '^list_folders' || true) of the folders" \
  "grants so far, by priority: $by_prio"
# e: the same when the minute's slots come one at a time -----------------------------
# After a quiet minute, 10 listings 6 s apart (P1..P9, then A2, which the copy needs)
# spend the window so that its slots free one every 6 s, as they do once a mount has
# been busy for a while; then a copy of NPACED files into A2, and 5 s into it `ls B3`.
log "step e: a quiet minute, then a minute of paced listings"
sleep 61
for c in "${C_P[@]}" $C_A2; do
  ls "$MNT/clients/$c" >/dev/null
  sleep 6
done
COPY_CLIENT=$C_A2
T_CP2=$(now)
( cp -r "$SRC2/." "$MNT/clients/$C_A2/" 2>"$WORK/cp2.err"; echo $? >"$WORK/cp2.rc"; date +%s.%N >"$WORK/cp2.end" ) &
CP_PID=$!
PIDS+=("$CP_PID")
sleep 5
ls_row e "slots one at a time: 5 s into a copy of $NPACED files into A2 ($C_A2), \`ls clients/$C_B3\` (never listed)" "$C_B3"
wait "$CP_PID" || true
cp2_time=$(awk -v a="$T_CP2" -v b="$(cat "$WORK/cp2.end")" 'BEGIN { printf "%.1f", b - a }')
row e2 "that copy: cp exit $(cat "$WORK/cp2.rc") after $cp2_time s" "—" "—" "—"

log "requests in order: $(requests | awk '{ print $1 ($2 != "" ? ":" $2 : "") }' | tr '\n' ' ')"

fusermount3 -u "$MNT"

echo
echo "--rate-limit 10 --daily-limit 500 --max-wait 120 (defaults), $(date -u '+%Y-%m-%d %H:%M UTC'), $PROFILE build, $(nproc) CPUs"
echo
echo '| step | what | time | API calls of the `ls` | went ahead of the listing |'
echo "|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
log "rate-limit waits logged by the mount: $(grep -c 'rate limit: waiting' "$WORK/mount.log" || true)"
