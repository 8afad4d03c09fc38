#!/usr/bin/env bash
# Do reads of different files run concurrently? Eight cold reads of 8 MiB files, each
# download throttled to 8 MiB/s by the fake server, started together: ~1 s means they
# overlap (serially they would take ~8 s). Run with 1 and 2 FUSE session threads, to
# show that the concurrency comes from replying in tokio tasks, not from threads.
# Usage: scripts/bench-concurrency.sh   (builds the release binary; loopback only)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
B=target/release/intakeq-fs
W=$(mktemp -d)
SP=""
cleanup() {
  mountpoint -q "$W/mnt" 2>/dev/null && fusermount3 -u -z "$W/mnt"
  [ -n "$SP" ] && kill "$SP" 2>/dev/null
  rm -rf --one-file-system "$W"
}
trap cleanup EXIT
mkdir -p "$W/mnt"
KEY="bench-$RANDOM$RANDOM" # the fake's key: not a secret
"$B" mock-server --listen 127.0.0.1:0 --api-key "$KEY" >"$W/url" 2>"$W/srv.log" &
SP=$!
for _ in $(seq 100); do [ "$(wc -l <"$W/url")" -ge 2 ] && break; sleep 0.1; done
URL=$(head -1 "$W/url")
ADM=${URL%/api/v1/}
# Line 2 is the header /_admin/ needs; curl reads it from the file, never from argv.
(umask 077 && sed -n 2p "$W/url" >"$W/admin.hdr")
J='content-type: application/json'
curl -sf -H @"$W/admin.hdr" -XPOST "$ADM/_admin/client" -H "$J" -d '{"id":6000,"first_name":"C","last_name":"D"}' >/dev/null
for n in 1 2 3 4 5 6 7 8; do
  curl -sf -H @"$W/admin.hdr" -XPOST "$ADM/_admin/file" -H "$J" -d "{\"client_id\":6000,\"name\":\"f$n.bin\",\"size\":8388608}" >/dev/null
done
curl -sf -H @"$W/admin.hdr" -XPOST "$ADM/_admin/bandwidth" -H "$J" -d '{"bytes_per_sec":8388608}' >/dev/null
echo "| FUSE session threads | 8 parallel cold reads (8 MiB each, 8 MiB/s per download) |"
echo "|---|---|"
for th in 1 2; do
  INTAKEQ_API_KEY=$KEY "$B" mount "$W/mnt" --base-url "$URL" --rate-limit 100000 \
    --spool-dir "$W/sp" --cache-dir "$W/cc" --log-file "$W/log" --fuse-threads "$th" --metadata-ttl 0
  ls "$W/mnt/clients/6000" >/dev/null
  s=$(date +%s.%N)
  P=()
  for n in 1 2 3 4 5 6 7 8; do
    cat "$W/mnt/clients/6000/f$n.bin" >/dev/null &
    P+=($!)
  done
  wait "${P[@]}"
  printf '| %s | %.2f s |\n' "$th" "$(echo "$(date +%s.%N) - $s" | bc)"
  fusermount3 -u "$W/mnt"
  sleep 0.5
done
