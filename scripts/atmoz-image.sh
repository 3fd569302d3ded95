#!/usr/bin/env bash
# Builds the filesystem of the `atmoz/sftp:debian` image without a Docker engine, as its
# Dockerfile does: Debian bookworm (debootstrap, minbase) with openssh-server, the packaged host
# keys removed, and atmoz's sshd_config, create-sftp-user and entrypoint copied in unchanged.
#
# Prints the root directory. Cached under ~/.cache/sftp-operator/atmoz-image/<hash>, where the
# hash covers atmoz's files and this script: a change to either builds a new root.
# ATMOZ_DIR overrides where atmoz's published files are (default: ../shared/atmoz beside the clone).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
atmoz="${ATMOZ_DIR:-$repo/../shared/atmoz}"
files=(Dockerfile entrypoint create-sftp-user sshd_config)
for f in "${files[@]}"; do
  [ -f "$atmoz/$f" ] || { echo "atmoz-image: $atmoz/$f is missing (set ATMOZ_DIR)" >&2; exit 2; }
done

cache="${XDG_CACHE_HOME:-$HOME/.cache}/sftp-operator/atmoz-image"
hash="$( (cd "$atmoz" && cat "${files[@]}"; cat "$repo/scripts/atmoz-image.sh") | sha256sum | cut -c1-16)"
root="$cache/$hash/rootfs"
if [ -f "$cache/$hash/complete" ]; then
  echo "$root"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "atmoz-image: debootstrap needs root" >&2; exit 2; }
# One build at a time (test processes may ask at once); the second finds it complete.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$cache/$hash/complete" ]; then
  echo "$root"
  exit 0
fi
command -v debootstrap >/dev/null || {
  echo "atmoz-image: debootstrap is missing (apt-get install debootstrap)" >&2
  exit 2
}

# The Debian mirror apt is configured with (deb822 or one-line sources), not a hard-coded host.
mirror="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
  grep -v -- '-security' | head -n1 || true)"
if [ -z "$mirror" ]; then
  mirror="$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\)[[:space:]].*/\2/p' \
    /etc/apt/sources.list 2>/dev/null | grep -v -- '-security' | head -n1 || true)"
fi
[ -n "$mirror" ] || { echo "atmoz-image: no Debian mirror found in apt's sources" >&2; exit 2; }

rm -rf "${cache:?}/$hash"
mkdir -p "$cache/$hash"
echo "atmoz-image: debootstrap bookworm from $mirror into $root (about two minutes)" >&2
debootstrap --variant=minbase --include=openssh-server bookworm "$root" "$mirror" >"$cache/$hash/debootstrap.log" 2>&1 || {
  tail -n 30 "$cache/$hash/debootstrap.log" >&2
  exit 1
}
# The Dockerfile's RUN step (apt-get upgrade is a no-op on a fresh debootstrap of the same suite).
# Inside the root: its /var/run is an absolute symlink to /run.
chroot "$root" /bin/sh -c 'rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb && mkdir -p /var/run/sshd && rm -f /etc/ssh/ssh_host_*key*'
# The Dockerfile's COPY steps, modes as in atmoz's repository (scripts executable).
install -m 644 "$atmoz/sshd_config" "$root/etc/ssh/sshd_config"
install -m 755 "$atmoz/create-sftp-user" "$root/usr/local/bin/create-sftp-user"
install -m 755 "$atmoz/entrypoint" "$root/entrypoint"
touch "$cache/$hash/complete"
# Older roots are never used again.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$hash" -exec rm -rf {} +
echo "$root"
