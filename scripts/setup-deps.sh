#!/usr/bin/env bash
# Install what a fresh Debian machine lacks for intakeq-fs: fuse3 (fusermount3) to
# mount, and the real tools the FUSE tests drive (rsync; getfattr/setfattr from attr;
# gio from libglib2.0-bin; vim, nano and sqlite3, with tmux to type into the editors;
# curl for the benchmark; dbus, gnome-keyring and secret-tool for the keyring test;
# samba and smbclient for the SMB tier, tests/smb.rs, which starts its own smbd on a
# loopback port: Debian also starts the packaged smbd on port 445 at install, with no
# share of ours).
# With --file-managers, also what scripts/bench-filemanagers.sh plays: a virtual display
# (xvfb), xdotool, strace, dbus-x11, pcmanfm, Thunar with tumbler and xfconf, and
# Nautilus if the distribution has it (not needed by CI or scripts/test.sh).
# Installs only what is missing; needs root (or sudo) only when something is.
set -euo pipefail
file_managers=0
for a in "$@"; do
  case "$a" in
    --file-managers) file_managers=1 ;;
    *) echo "usage: $0 [--file-managers]" >&2; exit 2 ;;
  esac
done
missing=()
command -v fusermount3 >/dev/null || missing+=(fuse3)
command -v rsync >/dev/null || missing+=(rsync)
command -v curl >/dev/null || missing+=(curl)
command -v getfattr >/dev/null || missing+=(attr)
command -v gio >/dev/null || missing+=(libglib2.0-bin)
command -v vim >/dev/null || missing+=(vim)
command -v nano >/dev/null || missing+=(nano)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
command -v tmux >/dev/null || missing+=(tmux)
# The key kept in a desktop keyring (tests/fuse_security.rs): a private D-Bus session,
# GNOME Keyring's Secret Service and libsecret's client.
lean=()
command -v dbus-run-session >/dev/null || lean+=(dbus-daemon)
command -v gnome-keyring-daemon >/dev/null || lean+=(gnome-keyring)
command -v secret-tool >/dev/null || lean+=(libsecret-tools)
# smbd and testparm are in /usr/sbin and /usr/bin, smbpasswd in /usr/bin (samba-common-bin,
# pulled in by samba); a user's PATH may lack /usr/sbin, so look there by name.
{ command -v smbd >/dev/null || [ -x /usr/sbin/smbd ]; } || missing+=(samba)
command -v smbclient >/dev/null || missing+=(smbclient)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
updated=0
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  updated=1
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ${#lean[@]} -gt 0 ]; then
  # Without their recommends (a desktop's PAM module, pkcs11, prompts): not needed.
  echo "installing: ${lean[*]}" >&2
  [ "$updated" = 1 ] || $sudo apt-get update -qq
  updated=1
  $sudo apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
fi
if [ "$file_managers" = 1 ]; then
  fm=()
  command -v Xvfb >/dev/null || fm+=(xvfb)
  command -v xdotool >/dev/null || fm+=(xdotool)
  command -v strace >/dev/null || fm+=(strace)
  command -v dbus-launch >/dev/null || fm+=(dbus-x11)
  command -v pcmanfm >/dev/null || fm+=(pcmanfm)
  command -v thunar >/dev/null || fm+=(thunar)
  command -v xfconf-query >/dev/null || fm+=(xfconf)
  [ -n "$(find /usr/lib -name tumblerd -type f 2>/dev/null | head -n1)" ] || fm+=(tumbler)
  if [ ${#fm[@]} -gt 0 ]; then
    echo "installing: ${fm[*]}" >&2
    [ "$updated" = 1 ] || $sudo apt-get update -qq
    updated=1
    $sudo apt-get install -y -qq --no-install-recommends "${fm[@]}" >/dev/null
  fi
  if ! command -v nautilus >/dev/null; then
    # Optional: the benchmark skips Nautilus when it does not install.
    [ "$updated" = 1 ] || $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends nautilus >/dev/null ||
      echo "nautilus does not install here; the file-manager benchmark skips it" >&2
  fi
fi
if [ ! -e /dev/fuse ]; then
  echo "error: /dev/fuse is missing: this machine cannot mount FUSE filesystems" >&2
  exit 1
fi
