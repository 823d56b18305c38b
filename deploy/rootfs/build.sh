#!/usr/bin/env bash
# The Dockerfile's install without a container engine (docs/container.md, "What was built and run here"): a Debian
# bookworm root filesystem with Python 3.11 (mmdebstrap), the project installed in it from requirements.lock the way
# the Dockerfile installs it, then packed as an OCI image layout (umoci). As root, from the repository root:
#
#   deploy/rootfs/build.sh [OUT]          # make rootfs; OUT defaults to /var/tmp/rlportfolio-rootfs
#   deploy/rootfs/smoke.sh OUT/rootfs     # make rootfs-smoke: serve an exported agent from inside it (chroot)
#
# OUT/rootfs is the root filesystem, OUT/oci the OCI layout (image rlportfolio:<ray>-py311-cpu-debian), OUT/build.log
# the whole log. What differs from the Dockerfile, because rayproject/ray cannot be pulled here: the base is Debian
# bookworm's python3.11 with a virtual environment at /opt/venv (Ray's image: Ubuntu with its own Python 3.11 and Ray
# preinstalled; here Ray comes from PyPI at the lock's pin like every other distribution), and torch's CPU build
# comes from PyTorch's CPU index only when that answers, else from the wheel the host's pip resolves for the lock's
# torch pin (TORCH_WHEEL=/path/to/torch-...+cpu-...whl to name one). The user (ray, uid 1000, group users), /app,
# the pip commands and the pin check are the Dockerfile's. SOURCE_REF=<git ref> installs that commit's tree instead
# of the working tree. Needs about 6 GB free under OUT.
set -euo pipefail

REPO=$(git rev-parse --show-toplevel)
cd "$REPO"
OUT=$(realpath -m "${1:-/var/tmp/rlportfolio-rootfs}")
ROOT=$OUT/rootfs
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RAY_VERSION=$(sed -n 's/^ray==//p' requirements.lock)
TORCH_PIN=$(sed -n 's/^torch==//p' requirements.lock)
PIP_PIN=26.3 # the Makefile's
TAG=$RAY_VERSION-py311-cpu-debian
# shellcheck source=deploy/rootfs/lib.sh
source "$REPO/deploy/rootfs/lib.sh"

[ "$(id -u)" = 0 ] || { echo "error: run as root (mmdebstrap --mode=root, chroot, mount)" >&2; exit 2; }
case "$OUT/" in "$REPO"/*) echo "error: OUT=$OUT is inside the repository; choose a folder outside it" >&2; exit 2 ;; esac
missing=()
for tool in mmdebstrap umoci; do command -v $tool >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$OUT"
exec > >(tee "$OUT/build.log") 2>&1
trap 'unmount_all "$ROOT"' EXIT
started=$SECONDS
step() { printf '\n== [%4ds] %s\n' $((SECONDS - started)) "$*"; }

step "Debian bookworm + python3.11 with mmdebstrap into $ROOT"
if [ -e "$ROOT" ]; then
  if grep -q " $ROOT/" /proc/mounts; then echo "error: something is still mounted under $ROOT" >&2; exit 1; fi
  rm -rf "$ROOT"
fi
mmdebstrap --mode=root --variant=minbase --include=python3.11,python3.11-venv,ca-certificates \
  --customize-hook='chroot "$1" useradd --uid 1000 --gid users --create-home --shell /bin/bash ray' \
  bookworm "$ROOT" "$MIRROR"
du -sh "$ROOT"

step "the checkout into /app (.dockerignore applied${SOURCE_REF:+, tree of $SOURCE_REF})"
mkdir -p "$ROOT/app"
if [ -n "${SOURCE_REF:-}" ]; then
  git ls-tree -r -z --name-only "$SOURCE_REF" | python3 deploy/rootfs/context.py .dockerignore >"$OUT/files"
  xargs -0 -a "$OUT/files" git archive --format=tar "$SOURCE_REF" -- | tar -x -C "$ROOT/app"
else
  git ls-files -z --cached --others --exclude-standard | python3 deploy/rootfs/context.py .dockerignore --existing >"$OUT/files"
  tar -c --null -T "$OUT/files" | tar -x -C "$ROOT/app"
fi
echo "$(tr -cd '\0' <"$OUT/files" | wc -c) files, $(du -sh "$ROOT/app" | cut -f1)"
chown -R 1000:100 "$ROOT/app"
install -d -o 1000 -g 100 "$ROOT/opt/venv"

mount_all "$ROOT"

step "virtual environment /opt/venv (the image's Python), pip==$PIP_PIN"
in_root "$ROOT" python3.11 -m venv /opt/venv
in_root "$ROOT" pip install --no-cache-dir --quiet "pip==$PIP_PIN"

step "torch==$TORCH_PIN, CPU build (the Dockerfile's first RUN)"
if curl -sf -m 10 -o /dev/null https://download.pytorch.org/whl/cpu/torch/; then
  in_root "$ROOT" pip install --no-cache-dir --no-deps --index-url https://download.pytorch.org/whl/cpu "torch==$TORCH_PIN"
else
  echo "download.pytorch.org does not answer here: installing the CPU wheel the host's pip resolves instead"
  wheel=${TORCH_WHEEL:-}
  if [ -z "$wheel" ]; then
    rm -rf "$OUT/wheels"
    "${HOST_PIP:-$REPO/.venv/bin/pip}" download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 -d "$OUT/wheels" "torch==$TORCH_PIN"
    wheel=$(ls "$OUT"/wheels/torch-*.whl)
  fi
  case "$(basename "$wheel")" in
    "torch-$TORCH_PIN+cpu-cp311-"*) ;;
    *) echo "error: $wheel is not torch $TORCH_PIN's CPU build for CPython 3.11 (a CUDA build pulls GBs)" >&2; exit 1 ;;
  esac
  echo "wheel: $wheel ($(du -h "$wheel" | cut -f1))"
  install -d -o 1000 -g 100 "$ROOT/tmp/wheels"
  install -o 1000 -g 100 -m 644 "$wheel" "$ROOT/tmp/wheels/"
  in_root "$ROOT" pip install --no-cache-dir --no-deps "/tmp/wheels/$(basename "$wheel")"
  rm -rf "$ROOT/tmp/wheels"
fi

step "the project from requirements.lock (the Dockerfile's second RUN)"
in_root "$ROOT" pip install --no-cache-dir --quiet -c requirements.lock -e .
in_root "$ROOT" python deploy/check_pins.py requirements.lock
in_root "$ROOT" rlportfolio --help
in_root "$ROOT" pip freeze >"$OUT/pip-freeze.txt"
echo "pip freeze: $(wc -l <"$OUT/pip-freeze.txt") lines in $OUT/pip-freeze.txt"

unmount_all "$ROOT"
rm -rf "${ROOT:?}"/tmp/* "$ROOT"/home/ray/.cache
: >"$ROOT/etc/resolv.conf"
echo "rootfs $(du -sh "$ROOT" | cut -f1), of which the virtual environment $(du -sh "$ROOT/opt/venv" | cut -f1)"

step "OCI image layout $OUT/oci (image rlportfolio:$TAG) with umoci"
rm -rf "$OUT/oci"
umoci init --layout "$OUT/oci"
umoci new --image "$OUT/oci:$TAG"
umoci insert --image "$OUT/oci:$TAG" "$ROOT" /
config=(--config.user 1000:100 --config.workingdir /app
  --config.env PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin --config.env LANG=C.UTF-8
  --config.env RAY_AUTH_MODE=disabled
  --config.exposedports 8000/tcp --config.exposedports 8265/tcp --config.exposedports 8080/tcp)
for arg in rlportfolio serve --models /app/models --host 0.0.0.0; do config+=(--config.cmd "$arg"); done
umoci config --image "$OUT/oci:$TAG" "${config[@]}"
umoci gc --layout "$OUT/oci"
umoci stat --image "$OUT/oci:$TAG" | tail -n 3
du -sh "$OUT/oci"

step "done in $((SECONDS - started)) s: $ROOT, $OUT/oci:$TAG"
