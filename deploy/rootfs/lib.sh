# Shared by build.sh and smoke.sh (sourced): the mounts a chroot of the rootfs needs, and their removal.
# Each mount is a fresh instance (proc, sysfs read-only, a tmpfs for /dev/shm, a new devpts), none binds a host folder,
# each is made private, and unmount_all, which the callers run from an EXIT trap, undoes them all.

MOUNTED=()

mount_all() {  # mount_all ROOTFS
  local root=$1
  mount -t proc proc "$root/proc"
  MOUNTED+=("$root/proc")
  mount -t sysfs -o ro sysfs "$root/sys"
  MOUNTED+=("$root/sys")
  # Ray keeps its object store in /dev/shm (a tmpfs of the default size, half the RAM, as Ray asks for over 30%);
  # devpts for anything that asks for a terminal.
  mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
  MOUNTED+=("$root/dev/shm")
  mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
  MOUNTED+=("$root/dev/pts")
  for target in "${MOUNTED[@]}"; do mount --make-private "$target"; done
  # Name resolution for pip: the host's resolver configuration. And the host's CA bundle (HOST_CA), for a host that
  # reaches PyPI through a TLS-inspecting proxy whose CA Debian's bundle lacks: pip gets it as PIP_CERT while the
  # rootfs is mounted, and unmount_all removes it, so the image keeps Debian's own trust store.
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  cp -L "${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}" "$root/run/host-ca.pem"
}

unmount_all() {  # unmount_all [ROOTFS]: the mounts mount_all made, innermost first (fails loudly if one stays busy)
  local i status=0
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[i]}" || { echo "error: could not unmount ${MOUNTED[i]}" >&2; status=1; }
  done
  MOUNTED=()
  if [ -n "${1:-}" ]; then rm -f "$1/run/host-ca.pem"; fi
  return $status
}

# root_cmd ROOTFS sets ROOT_CMD, the prefix that runs a command inside the rootfs as the image's user (ray, uid 1000,
# group users), in /app, with the image's environment only; in_root ROOTFS COMMAND... runs one.
root_cmd() {
  local ca=()
  [ -f "$1/run/host-ca.pem" ] && ca=(PIP_CERT=/run/host-ca.pem)
  ROOT_CMD=(chroot --userspec=1000:100 "$1" /usr/bin/env -i HOME=/home/ray USER=ray LANG=C.UTF-8
    PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin RAY_AUTH_MODE=disabled "${ca[@]}"
    /bin/sh -c 'cd /app && exec "$@"' sh)
}

in_root() {
  root_cmd "$1"
  shift
  "${ROOT_CMD[@]}" "$@"
}
