#!/usr/bin/env bash
# Browsing against the real limits (issues 13 and 14): a file manager and `find` over a
# 2,000-client fake account, mounted at the defaults (10 requests a minute, 500 a day,
# --max-wait 120, 20 % of the day kept for real work). Nothing is scaled: the limiter
# runs on the real clock, so the run takes about 4 minutes, most of it waiting for the
# per-minute window exactly as a user would.
#
# Steps (API calls from the fake's counters; times are wall clock):
#   mount      the key check at mount (1 call)
#   A          `ls clients`: the client list, 100 a page (21 pages for 2,000 clients)
#   B          a file manager counting items: the first 30 client folders enumerated
#              at once, the way GIO does (opendir + readdir each, all in parallel)
#   C          5 s later the user opens one more client folder: time until it shows
#   (after E, on the remounted drive)
#   B2+C2      (issue 20) after the minute clears: ONE process lists 30 client folders
#              at once from 30 threads (a file manager's item counts), and 1.5 s later
#              the same process lists one more (the person's double-click): time until
#              that one shows (python3's os.listdir, one process)
#   R          (issue 20) after the minute clears: a script's redirect whose commands
#              fork (`bash -c 'for i in 1..10; do /bin/echo line $i; done' > f`), a
#              group command (`{ date; sleep 1; date; } > f`) and a pipe into tee:
#              API calls each (1 upload and its confirming listing is the minimum)
#   D          `find clients -name '*.pdf'` over all 2,000 clients
#   E          unmount, mount again, `ls clients` and the folder of C: from the kept
#              listings
# and how much of the day's 500 is left. Prints one markdown table.
#
# Usage: scripts/bench-browse.sh
# Optional: BENCH_BROWSE_CLIENTS (default 2000), BENCH_BIN=PATH (that binary, no build),
# BENCH_PROFILE=release (default: the debug build, which is fine here: the run is bound
# by the rate limit, not the CPU).
set -Eeuo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

N="${BENCH_BROWSE_CLIENTS:-2000}"
PROFILE="${BENCH_PROFILE:-debug}"
[ -z "${BENCH_BIN:-}" ] || PROFILE="given ($BENCH_BIN)"
FIRST=20001 # client ids FIRST .. FIRST+N-1

# shellcheck source=scripts/lib/fake-bench.sh
source scripts/lib/fake-bench.sh
fake_bench_start bench-browse
# Calls since the last reset: "N (endpoint n, ...)"
calls() {
  curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" "$ADMIN/counts" | tr -d '{}"' | tr ',' '\n' |
    awk -F: '$1 == "total" { t = $2; next } $2 > 0 { s = s (s ? ", " : "") $1 " " $2 } END { printf "%d (%s)", t, s }'
}
total() { curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" "$ADMIN/counts" | sed -n 's/.*"total":\([0-9]*\).*/\1/p'; }

log "creating $N clients with 2 files each (admin API, not counted)"
for i in $(seq 0 $((N - 1))); do
  echo "{\"client_id\":$((FIRST + i)),\"n\":2,\"size\":512}"
done | xargs -d '\n' -P 8 -I{} curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" -X POST -H 'Content-Type: application/json' -d {} "$ADMIN/bulk-client"
admin_post file "{\"client_id\":$FIRST,\"name\":\"intake.pdf\",\"size\":4096}"

MNT="$WORK/mnt"
mkdir -p "$MNT"
mount_fs() {
  INTAKEQ_API_KEY="$KEY" INTAKEQ_FS_LOG=info "$BIN" mount "$MNT" --base-url "$BASE" --foreground \
    --spool-dir "$WORK/spool" --cache-dir "$WORK/cache" --listings-dir "$WORK/listings" \
    >>"$WORK/mount.log" 2>&1 &
  MOUNT_PID=$!
  PIDS+=($MOUNT_PID)
  MOUNTS+=("$MNT")
  for _ in $(seq 900); do mountpoint -q "$MNT" && return 0; sleep 0.1; done
  log "mount did not appear"; cat "$WORK/mount.log" >&2; return 1
}
# Unmount and wait for the daemon to exit (it holds the spool's lock until then).
unmount_fs() {
  fusermount3 -u "$MNT"
  for _ in $(seq 300); do kill -0 "$MOUNT_PID" 2>/dev/null || return 0; sleep 0.1; done
  log "the mount process did not exit within 30 s of the unmount"; return 1
}

ROWS=()
SUM=0 # calls of the first mount so far: what its day has spent
row() {
  ROWS+=("| $1 | $2 | $3 | $4 |")
  SUM=$((SUM + $(total)))
}

reset_counts
T=$(now); mount_fs
row "mount" "key check" "$(calls)" "$(since "$T") s"

reset_counts
T=$(now)
listed=$(ls "$MNT/clients" | wc -l)
row "A" "\`ls clients\` ($listed of $N clients shown)" "$(calls)" "$(since "$T") s"

reset_counts
T=$(now)
mkdir -p "$WORK/counts"
for id in $(ls "$MNT/clients" | head -n 30); do
  ( if ls -f "$MNT/clients/$id" >/dev/null 2>"$WORK/counts/$id.err"; then echo ok; else echo failed; fi >"$WORK/counts/$id" ) &
done
sleep 5
T_CLICK=$(now)
CLICK=$((FIRST + 40))
click_out=$(ls "$MNT/clients/$CLICK" 2>&1 | tr '\n' ' ')
click_time=$(since "$T_CLICK")
sleep 1
counted=$(cat "$WORK"/counts/* 2>/dev/null | grep -c '^ok$' || true)
refused=$(cat "$WORK"/counts/* 2>/dev/null | grep -c '^failed$' || true)
errs=$(cat "$WORK"/counts/*.err 2>/dev/null | sed 's/.*: //' | sort | uniq -c | sed 's/^ *//' | tr '\n' ';' || true)
row "B+C" "30 folders counted at once ($counted counted, $refused refused: $errs), then the user opens one 5 s later" "$(calls)" "opened folder shown after $click_time s ($click_out)"

reset_counts
T=$(now)
find_out=$(find "$MNT/clients" -name '*.pdf' 2>"$WORK/find.err" || true)
find_errs=$(grep -c 'Resource temporarily unavailable' "$WORK/find.err" || true)
row "D" "\`find clients -name '*.pdf'\` ($(echo "$find_out" | grep -c . || true) found, $find_errs directories refused with EAGAIN)" "$(calls)" "$(since "$T") s"

DAY_SPENT=$SUM
unmount_fs
# Right away: the quota ledger carries this minute's spending over to the remount, so
# its key check waits for the next slot in the background while the mount appears and
# serves the kept listings (E's calls are that check, if its slot comes within E).
reset_counts
T=$(now); mount_fs
ls "$MNT/clients" >/dev/null
ls "$MNT/clients/$CLICK" >/dev/null
ls "$MNT/by-name" >/dev/null
row "E" "remount at once after D's busy minute, \`ls clients\`, \`ls by-name\` and C's folder again" "$(calls)" "$(since "$T") s"

# The rows of issue 20 come last, on the same mount, each after the minute cleared, so
# that A-E measure as they always did.
# Issue 20: a file manager's counts and the click after them, from ONE process.
log "waiting 61 s for the minute to clear"
sleep 61
reset_counts
burst_out=$(python3 - "$MNT/clients" "$FIRST" "$((FIRST + 60))" <<'PY'
import os, sys, threading, time
root, first, click = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ok = []
def count(c):
    try:
        os.listdir(os.path.join(root, str(c)))
        ok.append(True)
    except OSError:
        ok.append(False)
threads = [threading.Thread(target=count, args=(first + 100 + i,)) for i in range(30)]
for t in threads:
    t.start()
time.sleep(1.5)
t0 = time.time()
try:
    n = len(os.listdir(os.path.join(root, click)))
    res = f"shown after {time.time() - t0:.1f} s ({n} entries)"
except OSError as e:
    res = f"FAILED after {time.time() - t0:.1f} s: {e.strerror}"
for t in threads:
    t.join()
print(f"{sum(ok)} counted, {len(ok) - sum(ok)} refused; the click {res}")
PY
)
row "B2+C2" "one process counts 30 folders at once (30 threads), 1.5 s later the same process opens one more" "$(calls)" "$burst_out"

# Issue 20: a script's redirect uploads once, whatever it forks.
log "waiting 61 s for the minute to clear"
sleep 61
REDIR="$MNT/clients/$FIRST"
ls "$REDIR" >/dev/null
for what in \
  "bash -c 'for i in 1 2 3 4 5 6 7 8 9 10; do /bin/echo line \$i; done' > nightly.log" \
  "{ date; sleep 1; date; } > group.log" \
  "printf 'a\\nb\\n' | tee tee.log > /dev/null"; do
  reset_counts
  T=$(now)
  (cd "$REDIR" && bash -c "$what")
  took=$(since "$T")
  sleep 4 # the batch's confirming listing comes 2 s after the upload
  row "R" "\`${what//|/\\|}\` in a client folder (a new file)" "$(calls)" "returned after $took s"
done

unmount_fs

echo
echo "$N clients, --rate-limit 10 --daily-limit 500 --max-wait 120 (defaults), $(date -u '+%Y-%m-%d %H:%M UTC'), $PROFILE build"
echo
echo "| step | what | API calls | time |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "First mount: $DAY_SPENT calls spent, $((500 - DAY_SPENT)) of the day's 500 left (of which 100 only for reading, uploads, deletes and renames)."
echo
log "refusals logged by the mount: $(grep -c 'refused' "$WORK/mount.log" || true)"
