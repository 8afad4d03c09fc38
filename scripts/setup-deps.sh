#!/usr/bin/env bash
# Install what a fresh Debian machine lacks for intakeq-fs: fuse3 (fusermount3) to
# mount, and the real tools the FUSE tests drive (rsync; getfattr/setfattr from attr;
# gio from libglib2.0-bin; vim, nano and sqlite3, with tmux to type into the editors;
# curl for the benchmark).
# Installs only what is missing; needs root (or sudo) only when something is.
set -euo pipefail
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
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -e /dev/fuse ]; then
  echo "error: /dev/fuse is missing: this machine cannot mount FUSE filesystems" >&2
  exit 1
fi
