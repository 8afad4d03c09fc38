#!/usr/bin/env bash
# Build the Debian package, install it with dpkg, and check the installed files only
# (never target/): --version names the commit, the man page renders, the completions
# load, the units verify, `mount -t fuse.intakeq-fs` works through mount.fuse3 against
# the installed fake server, the system service's way of running (its own user, one
# capability, the key from a systemd credential) mounts and stops cleanly, and
# `dpkg -r` removes the package and leaves users' state alone. Needs root (CI is).
#
#   scripts/test-package.sh          # builds with scripts/package.sh first
#   scripts/test-package.sh --no-build
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "test-package: needs root (dpkg -i)" >&2; exit 1; }
[ "${1:-}" = --no-build ] || scripts/package.sh
deb=$(ls target/debian/intakeq-fs_*.deb | head -n1)
dbgsym=$(ls target/debian/intakeq-fs-dbgsym_*.ddeb 2>/dev/null | head -n1 || true)
fail() { echo "test-package: FAIL: $*" >&2; exit 1; }
pass() { echo "test-package: ok: $*"; }
export DEBIAN_FRONTEND=noninteractive
need=()
command -v zsh >/dev/null || need+=(zsh)
command -v fish >/dev/null || need+=(fish)
command -v man >/dev/null || need+=(man-db)
command -v setpriv >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/intakeq-fs-pkgtest.XXXXXX)
chmod 755 "$work"
cleanup() {
  for m in "$work/mnt" "$work/svc"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" 2>/dev/null
  done
  [ -n "${mock_pid:-}" ] && kill "$mock_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# What users keep, which removing the package must not touch.
mkdir -p /var/lib/intakeq-fs/keep-me /root/.local/state/intakeq-fs
echo marker >/var/lib/intakeq-fs/keep-me/marker
echo marker >/root/.local/state/intakeq-fs/pkgtest-marker

dpkg -i "$deb" >/dev/null
[ -n "$dbgsym" ] && dpkg -i "$dbgsym" >/dev/null
bin=/usr/bin/intakeq-fs
[ -x "$bin" ] || fail "no /usr/bin/intakeq-fs after dpkg -i"
# mount(8) runs helpers with its default PATH: nothing there may shadow the package.
for other in /usr/local/sbin/intakeq-fs /usr/local/bin/intakeq-fs /usr/sbin/intakeq-fs; do
  [ ! -e "$other" ] || fail "$other shadows the package's /usr/bin/intakeq-fs for mount -t: remove it"
done

# 1. The version names the commit it was built from.
v=$("$bin" --version)
commit=$(git rev-parse --short=12 HEAD)
case "$v" in *"commit $commit"*) pass "--version: $v" ;; *) fail "--version says '$v', not commit $commit" ;; esac
size=$(stat -c %s "$bin")
pass "installed binary: $((size / 1024 / 1024)) MiB ($size bytes), stripped: $(file -b "$bin" 2>/dev/null | grep -o 'stripped\|not stripped' || echo '?')"
[ -n "$dbgsym" ] && pass "debug info: $(dpkg -L intakeq-fs-dbgsym | grep '\.debug$' | head -n1)"

# 2. The man page renders; the completions load.
man -P cat intakeq-fs 2>/dev/null | grep -q "intakeq-fs" || fail "man intakeq-fs does not render"
pass "man intakeq-fs renders ($(man -w intakeq-fs))"
bash -c 'source /usr/share/bash-completion/completions/intakeq-fs && complete -p intakeq-fs' >/dev/null ||
  fail "bash completion does not load"
zsh -n /usr/share/zsh/vendor-completions/_intakeq-fs || fail "zsh completion does not parse"
fish -n /usr/share/fish/vendor_completions.d/intakeq-fs.fish || fail "fish completion does not parse"
fish -c 'complete -C "intakeq-fs mo"' >"$work/fish.out" 2>"$work/fish.err"
grep -q mount "$work/fish.out" || fail "fish does not complete 'intakeq-fs mo'"
fish -c 'complete -C "intakeq-fs mock-server --profile "' >/dev/null 2>>"$work/fish.err"
[ ! -s "$work/fish.err" ] || fail "fish warns while completing: $(head -n3 "$work/fish.err")"
pass "bash, zsh and fish completions load"

# 3. The units verify; the system template's exposure score.
# (The user unit is verified as a plain unit file: `--user` needs a user session.)
out=$(systemd-analyze verify /usr/lib/systemd/user/intakeq-fs.service 2>&1 || true)
[ -z "$out" ] || fail "systemd-analyze verify the user unit: $out"
cp /usr/lib/systemd/system/intakeq-fs@.service "$work/intakeq-fs@clinic.service"
out=$(systemd-analyze verify "$work/intakeq-fs@clinic.service" 2>&1 || true)
[ -z "$out" ] || fail "systemd-analyze verify intakeq-fs@.service: $out"
score=$(systemd-analyze security --offline=true "$work/intakeq-fs@clinic.service" 2>/dev/null | grep "Overall exposure" || true)
pass "units verify; system template: ${score#→ }"
getent passwd intakeq-fs >/dev/null || fail "the package did not create the intakeq-fs user"
pass "system user: $(getent passwd intakeq-fs)"

# 4. mount -t fuse.intakeq-fs through mount.fuse3, against the installed fake server.
key="pkgtest-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$bin" mock-server --demo --listen 127.0.0.1:0 --api-key "$key" >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
for _ in $(seq 100); do [ -s "$work/mock.out" ] && break; sleep 0.1; done
base=$(head -n1 "$work/mock.out")
[ -n "$base" ] || fail "mock-server printed no base URL: $(cat "$work/mock.err")"
install -m 600 /dev/null "$work/key"
printf '%s\n' "$key" >"$work/key"
mkdir -p "$work/mnt" "$work/state"
mount -t fuse.intakeq-fs intakeq "$work/mnt" \
  -o "base_url=$base,api_key_file=$work/key,spool_dir=$work/state,cache_dir=$work/state,log_file=$work/mount.log,rate_limit=600"
findmnt -n -o FSTYPE "$work/mnt" | grep -q "fuse.intakeq-fs" || fail "mount -t did not mount fuse.intakeq-fs"
n=$(ls "$work/mnt/clients" | wc -l)
[ "$n" -gt 0 ] || fail "the mount shows no clients"
umount "$work/mnt"
pass "mount -t fuse.intakeq-fs: $n demo clients, unmounted"

# 5. As the system service runs it: the intakeq-fs user with only CAP_SYS_ADMIN and no
#    new privileges, the key from $CREDENTIALS_DIRECTORY, shared with a group.
mkdir -p "$work/svc" "$work/creds" "$work/svcstate"
printf '%s\n' "$key" >"$work/creds/intakeq-api-key"
chown -R intakeq-fs:intakeq-fs "$work/creds" "$work/svcstate"
chmod 0400 "$work/creds/intakeq-api-key"
chmod 0500 "$work/creds"
chmod 0700 "$work/svcstate"
setpriv --reuid=intakeq-fs --regid=intakeq-fs --init-groups \
  --inh-caps=-all,+sys_admin --ambient-caps=-all,+sys_admin --bounding-set=-all,+sys_admin \
  --no-new-privs \
  env -i PATH=/usr/bin:/bin XDG_STATE_HOME="$work/svcstate" CREDENTIALS_DIRECTORY="$work/creds" \
  "$bin" mount "$work/svc" --foreground --allow-other --gid users --umask 0007 \
  --base-url "$base" --rate-limit 600 --log-file "$work/svcstate/svc.log" &
svc_pid=$!
for _ in $(seq 100); do findmnt -n "$work/svc" >/dev/null 2>&1 && break; sleep 0.1; done
findmnt -n -o FSTYPE,OPTIONS "$work/svc" | grep -q "allow_other" || fail "the service-style mount did not come up: $(cat "$work/svcstate/svc.log" 2>/dev/null)"
owner=$(stat -c '%U:%G %a' "$work/svc/clients")
[ "$owner" = "intakeq-fs:users 770" ] || fail "the service-style mount shows $owner, not intakeq-fs:users 770"
grep -q "$key" "/proc/$svc_pid/environ" 2>/dev/null && fail "the key is in the daemon's environment"
kill -TERM "$svc_pid"
wait "$svc_pid" || fail "the service-style daemon did not exit 0 on SIGTERM"
findmnt -n "$work/svc" >/dev/null 2>&1 && fail "SIGTERM did not unmount"
pass "as the service: user intakeq-fs, CAP_SYS_ADMIN only, no-new-privs, key from the credential; SIGTERM unmounts"

# 6. A credential encrypted the way the README says decrypts to the key.
if systemd-creds setup >/dev/null 2>&1 || [ -e /var/lib/systemd/credential.secret ]; then
  printf '%s' "$key" | systemd-creds encrypt --name=intakeq-api-key - "$work/key.cred"
  [ "$(systemd-creds decrypt --name=intakeq-api-key "$work/key.cred" -)" = "$key" ] || fail "systemd-creds round trip"
  grep -q "$key" "$work/key.cred" && fail "the encrypted credential holds the key in clear"
  pass "systemd-creds encrypt/decrypt round trip (host key)"
else
  echo "test-package: note: systemd-creds has no host key here; the credential is tested as the directory systemd makes"
fi

# 7. dpkg -r removes the package and nothing of the users'.
kill "$mock_pid" 2>/dev/null || true
mock_pid=
[ -n "$dbgsym" ] && dpkg -r intakeq-fs-dbgsym >/dev/null
dpkg -r intakeq-fs >/dev/null
[ ! -e "$bin" ] || fail "dpkg -r left /usr/bin/intakeq-fs"
[ -f /var/lib/intakeq-fs/keep-me/marker ] || fail "dpkg -r removed /var/lib/intakeq-fs"
[ -f /root/.local/state/intakeq-fs/pkgtest-marker ] || fail "dpkg -r removed a user's state"
rm -rf /var/lib/intakeq-fs/keep-me /root/.local/state/intakeq-fs/pkgtest-marker
pass "dpkg -r: package gone, users' state kept"
echo "test-package: all checks passed"
