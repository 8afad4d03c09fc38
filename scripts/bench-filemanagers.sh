#!/usr/bin/env bash
# File managers against the real limits (issue 14): pcmanfm, Thunar (item counts off and
# on) and, if installed, Nautilus, played under a virtual display (Xvfb) against a mount
# of a fake account at the defaults (10 requests a minute, 500 a day, --max-wait 120,
# 20 % of the day kept for real work). The account has BENCH_FM_CLIENTS clients (default
# 204): all but one with 2 small files each, and one whose folder holds 30 scans: 15 PDFs and
# 15 JPEGs of 0.2-1.8 MB (under pcmanfm's 2 MiB thumbnail limit). The scans are random
# bytes under those names: a thumbnailer downloads them exactly as it would real scans
# and then fails to decode them (the cost, the download, is the same).
#
# Each file manager gets a fresh fake server (so a fresh daily budget), a fresh mount,
# a fresh home (no thumbnail cache) and its own D-Bus session. Steps:
#   1 open /clients     the file manager is started on /clients; calls until the end of
#                       a BENCH_FM_SETTLE (default 20) s idle window
#   2 open a client     the client's folder opened in the running instance (`pcmanfm DIR`,
#                       `thunar DIR`, `nautilus DIR`: a new tab or window in the same
#                       process, the same loading as a double-click on the folder); calls
#                       during the next BENCH_FM_THUMB_WAIT (default 30) s while it idles
#                       and thumbnails
#   3 double-click      a double-click (xdotool) on the first file of that folder, while
#                       thumbnailing may still run; the file opens in a stand-in viewer
#                       (the default application for PDF and JPEG in the fresh home) that
#                       reads the whole file and writes the time it finished
#   4 idle              calls during the next BENCH_FM_IDLE (default 180) s: what the
#                       file manager spends on its own once the user has what they wanted
# "shown" is when the file manager's own read of the directory ended: the first
# getdents64 returning 0 (end of directory) on that directory's fd, from `strace -f`
# on the file manager (per thread, with -ttt -T: the call's end). "opened" is when the
# stand-in viewer finished reading the double-clicked file. API calls come from the
# fake server's counters (uncounted admin API), reset at the start of each step.
#
# Usage: scripts/bench-filemanagers.sh [pcmanfm] [pcmanfm-nopreviews] [thunar]
#        [thunar-counts] [nautilus]   (default: all; nautilus only if installed)
# Optional: BENCH_FM_IDLE=60 for a shorter run (thumbnailing a folder of 30 scans
# takes 3 minutes at 10/min, so a shorter idle step shows only part of it),
# BENCH_PROFILE=release (default: the debug build; the run is bound by the rate limit).
# Needs root or a user who may mount FUSE; installs its tools with
# `scripts/setup-deps.sh --file-managers`. Never run by CI or scripts/test.sh.
set -Eeuo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

N="${BENCH_FM_CLIENTS:-204}"
SETTLE="${BENCH_FM_SETTLE:-20}"
THUMB_WAIT="${BENCH_FM_THUMB_WAIT:-30}"
IDLE="${BENCH_FM_IDLE:-180}"
PROFILE="${BENCH_PROFILE:-debug}"
FIRST=20001     # client ids FIRST .. FIRST+N-2, and CLIENT
CLIENT=30001    # the client whose folder holds the scans (only them)
SHOW_LIMIT="${BENCH_FM_SHOW_LIMIT:-240}" # seconds to wait for a folder to show or a file to open

WORK=""
PIDS=() # killed in reverse order at exit, by pid only
MNT=""
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM ERR
  stop_run
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null; wait "${PIDS[$i]}" 2>/dev/null; done
  [ -n "$WORK" ] && [ -z "${BENCH_FM_KEEP:-}" ] && rm -rf --one-file-system "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
log() { echo "bench-filemanagers: $*" >&2; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f s", b - a }'; }

scripts/setup-deps.sh --file-managers >/dev/null
if [ "$PROFILE" = release ]; then
  cargo build --release --locked -q
else
  cargo build --locked -q
fi
BIN="${BENCH_BIN:-$PWD/target/$PROFILE/intakeq-fs}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/intakeq-fm.XXXXXX")

WANT=("$@")
if [ ${#WANT[@]} -eq 0 ]; then
  WANT=(pcmanfm pcmanfm-nopreviews thunar thunar-counts)
  command -v nautilus >/dev/null && WANT+=(nautilus)
fi

# One virtual display for all runs.
exec 3>"$WORK/display"
Xvfb -displayfd 3 -screen 0 1280x1024x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
PIDS+=($!)
exec 3>&-
for _ in $(seq 100); do [ -s "$WORK/display" ] && break; sleep 0.1; done
DISPLAY=":$(head -n1 "$WORK/display")"
export DISPLAY

# State of the current run (one file manager), torn down by stop_run.
RUN="" SERVER_PID="" MOUNT_PID="" FM_PID="" DBUS_PID="" ADMIN="" ADMIN_HDR=""
stop_run() {
  # The file manager (strace's child) first: strace with -o ignores SIGTERM and waits
  # for its tracees, and pcmanfm does not always quit on SIGTERM, so KILL after 5 s.
  if [ -n "$FM_PID" ]; then
    pkill -TERM -P "$FM_PID" 2>/dev/null || true
    local _i
    for _i in $(seq 25); do pgrep -P "$FM_PID" >/dev/null || break; sleep 0.2; done
    pkill -KILL -P "$FM_PID" 2>/dev/null || true
    kill "$FM_PID" 2>/dev/null || true
    wait "$FM_PID" 2>/dev/null || true
  fi
  # Services the session bus started for the file manager (tumblerd, xfconfd, gvfs, ...).
  if [ -n "$DBUS_PID" ]; then
    pkill -TERM -P "$DBUS_PID" 2>/dev/null || true
    kill "$DBUS_PID" 2>/dev/null || true
  fi
  if [ -n "$MNT" ] && mountpoint -q "$MNT" 2>/dev/null; then
    fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  fi
  local p
  for p in "$MOUNT_PID" "$SERVER_PID"; do
    if [ -n "$p" ]; then
      kill "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  FM_PID="" DBUS_PID="" MOUNT_PID="" SERVER_PID="" MNT=""
}

reset_counts() { curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" -X POST "$ADMIN/reset-counts" >/dev/null; }
# Calls since the last reset: "N (endpoint n, ...)"
calls() {
  curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" "$ADMIN/counts" | tr -d '{}"' | tr ',' '\n' |
    awk -F: '$1 == "total" { t = $2; next } $2 > 0 { s = s (s ? ", " : "") $1 " " $2 } END { printf "%d (%s)", t, s }'
}
total() { curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" "$ADMIN/counts" | sed -n 's/.*"total":\([0-9]*\).*/\1/p'; }

start_run() { # $1: mount flags
  RUN=$(mktemp -d "$WORK/run.XXXXXX")
  mkdir -p "$RUN/home" "$RUN/runtime" "$RUN/strace" "$RUN/mnt"
  chmod 700 "$RUN/runtime"
  local key
  key="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  "$BIN" mock-server --listen 127.0.0.1:0 --api-key "$key" >"$RUN/server.url" 2>"$RUN/server.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do [ "$(wc -l <"$RUN/server.url")" -ge 2 ] && break; sleep 0.1; done
  local base
  base=$(head -n1 "$RUN/server.url")
  ADMIN="${base%/api/v1/}/_admin"
  # Line 2 is the header /_admin/ needs; curl reads it from the file, never from argv.
  ADMIN_HDR="$RUN/admin.hdr"
  (umask 077 && sed -n 2p "$RUN/server.url" >"$ADMIN_HDR")
  log "creating $N clients (admin API, not counted)"
  local i
  for i in $(seq 0 $((N - 2))); do
    echo "{\"client_id\":$((FIRST + i)),\"n\":2,\"size\":512}"
  done | xargs -d '\n' -P 8 -I{} curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" -X POST -H 'Content-Type: application/json' -d {} "$ADMIN/bulk-client"
  curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" -X POST -H 'Content-Type: application/json' \
    -d "{\"id\":$CLIENT,\"first_name\":\"Scan\",\"last_name\":\"Client\"}" "$ADMIN/client"
  for i in $(seq -w 1 30); do
    local ext=pdf
    [ "$((10#$i))" -gt 15 ] && ext=jpg
    echo "{\"client_id\":$CLIENT,\"name\":\"scan-$i.$ext\",\"size\":$((200000 + (10#$i * 537311) % 1600000))}"
  done | xargs -d '\n' -P 4 -I{} curl -sS -f --noproxy '*' -H @"$ADMIN_HDR" -X POST -H 'Content-Type: application/json' -d {} "$ADMIN/file" >/dev/null
  MNT="$RUN/mnt"
  # shellcheck disable=SC2086 # $1 is a list of flags
  INTAKEQ_API_KEY="$key" INTAKEQ_FS_LOG="${BENCH_FM_LOG:-info}" HOME="$RUN/home" XDG_STATE_HOME="$RUN/state" \
    "$BIN" mount "$MNT" --base-url "$base" --foreground $1 \
    --spool-dir "$RUN/spool" --cache-dir "$RUN/cache" --listings-dir "$RUN/listings" \
    >"$RUN/mount.log" 2>&1 &
  MOUNT_PID=$!
  for _ in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.1; done
  mountpoint -q "$MNT" || { log "mount did not appear"; cat "$RUN/mount.log" >&2; return 1; }

  # The fresh home: the stand-in viewer as the default application for PDF and JPEG.
  local h="$RUN/home"
  mkdir -p "$h/.local/share/applications" "$h/.config" "$h/.cache"
  cat >"$RUN/viewer" <<EOF
#!/bin/sh
# Stand-in viewer: read the whole file, then say when and which.
cat "\$1" >/dev/null && echo "\$(date +%s.%N) \$(basename "\$1")" >>"$RUN/opened"
EOF
  chmod +x "$RUN/viewer"
  printf '[Desktop Entry]\nType=Application\nName=Bench viewer\nExec=%s %%f\nMimeType=application/pdf;image/jpeg;\nNoDisplay=true\n' \
    "$RUN/viewer" >"$h/.local/share/applications/bench-viewer.desktop"
  printf '[Default Applications]\napplication/pdf=bench-viewer.desktop\nimage/jpeg=bench-viewer.desktop\n' >"$h/.config/mimeapps.list"
  export HOME="$h" XDG_CONFIG_HOME="$h/.config" XDG_CACHE_HOME="$h/.cache" XDG_DATA_HOME="$h/.local/share" \
    XDG_RUNTIME_DIR="$RUN/runtime" NO_AT_BRIDGE=1
  local bus
  bus=$(dbus-launch --sh-syntax)
  DBUS_SESSION_BUS_ADDRESS=$(echo "$bus" | sed -n "s/^DBUS_SESSION_BUS_ADDRESS='\(.*\)';$/\1/p")
  DBUS_PID=$(echo "$bus" | sed -n 's/^DBUS_SESSION_BUS_PID=\([0-9]*\);$/\1/p')
  export DBUS_SESSION_BUS_ADDRESS
}

# Epoch time at which the file manager's read of directory $1 ended, after $2.
shown_at() {
  { cat "$RUN"/strace/st.* 2>/dev/null || true; } |
    awk -v p="<$1>," -v after="$2" '
      index($0, "getdents64(") && index($0, p) && $0 ~ /\) = 0 <[0-9.]+>$/ {
        d = $NF; gsub(/[<>]/, "", d); end = $1 + d
        if (end > after && (best == "" || end < best)) best = end
      }
      END { if (best != "") printf "%.3f", best }'
}
wait_shown() { # $1 dir, $2 since: prints "N.N s" or "not shown after N s"
  local t=""
  for _ in $(seq $((SHOW_LIMIT * 5))); do
    t=$(shown_at "$1" "$2")
    [ -n "$t" ] && { secs "$2" "$t"; return 0; }
    sleep 0.2
  done
  echo "not shown after $SHOW_LIMIT s"
}
wait_opened() { # $1 since
  local line
  for _ in $(seq $((SHOW_LIMIT * 5))); do
    if [ -s "$RUN/opened" ]; then
      line=$(head -n1 "$RUN/opened")
      echo "$(secs "$1" "${line%% *}") (${line#* })"
      return 0
    fi
    sleep 0.2
  done
  echo "not opened after $SHOW_LIMIT s"
}

ROWS=()
row() {
  ROWS+=("| $1 | $2 | $3 | $4 |")
  log "| $1 | $2 | $3 | $4 |"
}

# $1 label, $2 mount flags, $3 program, $4 x, $5 y: the first file in the folder's window
# (windows open at 0,0 without a window manager; measured from screenshots under Xvfb,
# as root: Thunar's root warning bar moves its rows down), $6 a function run before the
# file manager starts (its settings), or "".
play() {
  local label="$1" flags="$2" prog="$3" x="$4" y="$5" setup="${6:-}"
  log "$label: mounting a fresh account"
  start_run "$flags"
  [ -n "$setup" ] && "$setup"
  local spent=0 t shown

  # 1: open /clients
  reset_counts
  t=$(now)
  strace -ff -ttt -T -y --seccomp-bpf -e trace=getdents64 -o "$RUN/strace/st" \
    "$prog" "$MNT/clients" >"$RUN/fm.log" 2>&1 &
  FM_PID=$!
  shown=$(wait_shown "$MNT/clients" "$t")
  sleep "$SETTLE"
  spent=$((spent + $(total)))
  row "$label" "1 open /clients, then ${SETTLE} s idle" "$(calls)" "shown after $shown"

  # 2: open one client folder in the running instance
  reset_counts
  t=$(now)
  "$prog" "$MNT/clients/$CLIENT" >>"$RUN/fm.log" 2>&1 || true
  shown=$(wait_shown "$MNT/clients/$CLIENT" "$t")
  local rest
  rest=$(awk -v a="$t" -v b="$(now)" -v w="$THUMB_WAIT" 'BEGIN { r = w - (b - a); print (r > 0 ? r : 0) }')
  sleep "$rest"
  spent=$((spent + $(total)))
  row "$label" "2 open client $CLIENT (30 scans), ${THUMB_WAIT} s from the open" "$(calls)" "shown after $shown"

  # 3: double-click the first file
  reset_counts
  t=$(now)
  xdotool mousemove "$x" "$y" click --repeat 2 --delay 80 1
  local opened
  opened=$(wait_opened "$t")
  spent=$((spent + $(total)))
  row "$label" "3 double-click the first file" "$(calls)" "opened after $opened"

  # 4: idle
  reset_counts
  sleep "$IDLE"
  spent=$((spent + $(total)))
  row "$label" "4 idle ${IDLE} s" "$(calls)" "$spent calls in all, $((500 - spent)) of the day left"
  log "$label: refusals in the mount's log: $(grep -c 'refused' "$RUN/mount.log" || true)"
  stop_run
  unset DBUS_SESSION_BUS_ADDRESS
}

for fm in "${WANT[@]}"; do
  case "$fm" in
    pcmanfm) play pcmanfm "" pcmanfm 209 131 ;;
    pcmanfm-nopreviews) play "pcmanfm, --no-previews" "--no-previews" pcmanfm 209 131 ;;
    thunar | thunar-counts)
      # Details view (the one that shows counts), counts "Never" or "Always", set in the
      # xfconf channel file before xfconfd starts in the fresh session.
      count=NEVER
      [ "$fm" = thunar-counts ] && count=ALWAYS
      write_thunar_settings() {
        mkdir -p "$XDG_CONFIG_HOME/xfce4/xfconf/xfce-perchannel-xml"
        cat >"$XDG_CONFIG_HOME/xfce4/xfconf/xfce-perchannel-xml/thunar.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<channel name="thunar" version="1.0">
  <property name="default-view" type="string" value="ThunarDetailsView"/>
  <property name="misc-folder-item-count" type="string" value="THUNAR_FOLDER_ITEM_COUNT_$count"/>
</channel>
EOF
      }
      play "Thunar, counts $([ "$count" = NEVER ] && echo off || echo on)" "" thunar 230 140 write_thunar_settings
      ;;
    nautilus)
      if command -v nautilus >/dev/null; then
        play Nautilus "" nautilus 336 125
      else
        log "nautilus is not installed: skipped"
      fi
      ;;
    *) log "unknown file manager: $fm"; exit 2 ;;
  esac
done

echo
echo "$N clients, one with 30 scans (15 PDF, 15 JPEG, 0.2-1.8 MB); --rate-limit 10 --daily-limit 500 --max-wait 120 (defaults); $(date -u '+%Y-%m-%d %H:%M UTC'); $PROFILE build"
echo
echo "| file manager | step | API calls | time |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
