#!/usr/bin/env bash
# Smoke test of a root filesystem deploy/rootfs/build.sh built: inside it (chroot, as the image's user ray, in /app)
# run `rlportfolio --help`, write the built-in market, export an untrained PPO agent (tests/support/agents.py, as
# the tests do, instead of minutes of training), serve it with `rlportfolio serve` and query /health, /agents and
# /allocate from outside (the chroot shares the host's network), then stop it with SIGINT to its process group
# (Ctrl-C) and check that it exits 0, that no process is left in the rootfs and that nothing holds its ports.
# As root, from the repository root:
#
#   deploy/rootfs/smoke.sh /var/tmp/rlportfolio-rootfs/rootfs      # make rootfs-smoke
#
# SOURCE_REF=<git ref>: take tests/support/agents.py from that commit (as build.sh's SOURCE_REF). Exit 0 when every
# check passed; the server's log is left in ROOTFS/smoke/serve.log.
set -euo pipefail

REPO=$(git rev-parse --show-toplevel)
cd "$REPO"
ROOT=$(realpath "${1:?usage: deploy/rootfs/smoke.sh ROOTFS}")
[ -x "$ROOT/opt/venv/bin/rlportfolio" ] || { echo "error: $ROOT has no /opt/venv/bin/rlportfolio (build.sh)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "error: run as root (chroot, mount)" >&2; exit 2; }
# shellcheck source=deploy/rootfs/lib.sh
source "$REPO/deploy/rootfs/lib.sh"

SERVER=
stop_server() {  # only after a failure: SIGKILL to the server's group, then to any process left in the rootfs
  if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then kill -KILL -- "-$SERVER" 2>/dev/null || true; fi
  local pid
  for pid in $(in_rootfs); do kill -KILL "$pid" 2>/dev/null || true; done
  sleep 1
}
trap 'stop_server; unmount_all "$ROOT"' EXIT
started=$SECONDS
step() { printf '\n== [%4ds] %s\n' $((SECONDS - started)) "$*"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Nothing listens on the port: a bind succeeds (SO_REUSEADDR: connections of the stopped server in TIME_WAIT aside).
port_free() {
  python3 -c "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', $1)); s.listen()" 2>/dev/null
}
in_rootfs() {  # PIDs of processes whose root directory is the rootfs
  local p
  for p in /proc/[0-9]*; do [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] && echo "${p#/proc/}"; done
  return 0
}

rm -rf "$ROOT/smoke"
install -d -o 1000 -g 100 "$ROOT/smoke" "$ROOT/smoke/tests" "$ROOT/smoke/tests/support"
if [ -n "${SOURCE_REF:-}" ]; then
  git show "$SOURCE_REF:tests/support/agents.py" >"$ROOT/smoke/tests/support/agents.py"
else
  cp tests/support/agents.py "$ROOT/smoke/tests/support/agents.py"
fi
: >"$ROOT/smoke/tests/support/__init__.py"
mount_all "$ROOT"

step "rlportfolio --help"
in_root "$ROOT" rlportfolio --help

step "rlportfolio data synth (the built-in market as a CSV)"
in_root "$ROOT" rlportfolio data synth --out /smoke/synthetic.csv --years 4
in_root "$ROOT" rlportfolio data validate /smoke/synthetic.csv

step "an untrained PPO agent exported to /smoke/models (tests/support/agents.py export_untrained)"
in_root "$ROOT" env PYTHONPATH=/smoke python -c '
from pathlib import Path
from envs.config import load_env_config
from envs.portfolio_env import PortfolioEnv
from tests.support.agents import export_untrained
print(export_untrained(PortfolioEnv(load_env_config()), "ppo", Path("/smoke"), Path("/smoke/models")))'
in_root "$ROOT" rlportfolio request-body --models /smoke/models >"$ROOT/smoke/body.json"

port=$(free_port)
metrics_port=$(free_port)
step "rlportfolio serve --models /smoke/models --port $port (in the chroot, its own process group)"
root_cmd "$ROOT"
# Job control gives the server its own process group (its PID) and leaves SIGINT as it is: a shell without it starts
# background commands with SIGINT ignored, and Python then never raises KeyboardInterrupt.
set -m
"${ROOT_CMD[@]}" rlportfolio serve --models /smoke/models --port "$port" --metrics-port "$metrics_port" \
  --no-dashboard >"$ROOT/smoke/serve.log" 2>&1 &
SERVER=$!
set +m
up=
for _ in $(seq 1 360); do
  # Up: /health answers and the command has printed its banner (serve.run has returned).
  if grep -q "^serving on http://" "$ROOT/smoke/serve.log" && curl -sf -m 5 "http://127.0.0.1:$port/health" >/dev/null; then
    up=1
    break
  fi
  kill -0 "$SERVER" 2>/dev/null || break
  sleep 0.5
done
[ -n "$up" ] || { echo "error: the server did not come up"; tail -n 40 "$ROOT/smoke/serve.log"; exit 1; }
echo "healthy after $((SECONDS - started)) s of the smoke test"

step "curl from outside the chroot"
curl -sS "http://127.0.0.1:$port/health" && echo
curl -sS "http://127.0.0.1:$port/agents" && echo
allocation=$(curl -sS -f "http://127.0.0.1:$port/allocate" -H 'Content-Type: application/json' -d @"$ROOT/smoke/body.json")
echo "$allocation"
python3 -c '
import json, math, sys
answer = json.loads(sys.argv[1])
assert answer["agent"] == "ppo", answer
assert math.isclose(sum(answer["weights"].values()), 1.0, abs_tol=1e-6), answer
print("allocate: agent", answer["agent"], "weights sum to 1")' "$allocation"

step "SIGINT to the server's process group (Ctrl-C)"
kill -INT -- "-$SERVER"
stopped=$SECONDS
status=0
for _ in $(seq 1 120); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$SERVER" 2>/dev/null; then echo "error: still running 60 s after SIGINT"; exit 1; fi
wait "$SERVER" || status=$?
SERVER=
echo "exit status $status after $((SECONDS - stopped)) s"
echo "the server's log:"
sed 's/^/  | /' "$ROOT/smoke/serve.log"
if grep -q Traceback "$ROOT/smoke/serve.log"; then echo "error: a traceback in the server's log"; exit 1; fi
for _ in $(seq 1 20); do [ -z "$(in_rootfs)" ] && break; sleep 0.5; done
left=$(in_rootfs)
[ -z "$left" ] || { echo "error: processes left in the rootfs:"; ps -o pid,pgid,args -p "$(echo $left | tr ' ' ,)"; exit 1; }
for p in "$port" "$metrics_port"; do port_free "$p" || { echo "error: port $p is still held"; exit 1; }; done
echo "no process left in the rootfs; ports $port and $metrics_port are free"
[ "$status" = 0 ] || { echo "error: rlportfolio serve exited $status"; exit 1; }

unmount_all "$ROOT"
grep -q " $ROOT/" /proc/mounts && { echo "error: mounts left under $ROOT"; exit 1; }
step "smoke test passed in $((SECONDS - started)) s"
