# Shared by build.sh and smoke.sh (sourced): the mounts a chroot of the rootfs needs, and their removal.
# Every mount is private (nothing propagates to the host's /dev, /proc or /sys) and is undone by unmount_all, which
# the callers run from an EXIT trap.

MOUNTED=()

mount_all() {  # mount_all ROOTFS
  local root=$1
  mount -t proc proc "$root/proc" && MOUNTED+=("$root/proc")
  mount -t sysfs -o ro sysfs "$root/sys" && MOUNTED+=("$root/sys")
  # Ray keeps its object store in /dev/shm; devpts for anything that asks for a terminal.
  mount -t tmpfs -o size=2g,mode=1777 shm "$root/dev/shm" && MOUNTED+=("$root/dev/shm")
  mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" && MOUNTED+=("$root/dev/pts")
  for target in "${MOUNTED[@]}"; do mount --make-private "$target"; done
  # Name resolution for pip: the host's resolver configuration.
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
}

unmount_all() {  # the mounts mount_all made, innermost first; fails loudly if one stays busy
  local i status=0
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[i]}" || { echo "error: could not unmount ${MOUNTED[i]}" >&2; status=1; }
  done
  MOUNTED=()
  return $status
}

# in_root ROOTFS [env NAME=VALUE ...] COMMAND...: run COMMAND inside the rootfs as the image's user (ray, uid 1000,
# group users), in /app, with the image's environment.
in_root() {
  local root=$1
  shift
  chroot --userspec=1000:100 "$root" /usr/bin/env -i HOME=/home/ray USER=ray LANG=C.UTF-8 \
    PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin RAY_AUTH_MODE=disabled \
    /bin/sh -c 'cd /app && exec "$@"' sh "$@"
}
