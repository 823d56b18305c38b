"""The local Ray instance's processes, for ``serving.lifecycle``: finding them (the process tree of the command that
started the instance, and HAProxy by this node's id in its configuration's path), ending them, a watchdog that ends
them once that command is gone however it went, and the check that every port the instance will listen on is free.
It never touches a process that was not the command's descendant or this node's HAProxy.

    python -m serving.instance --watch PID FD     # the watchdog (started by start_watchdog, in a session of its own)
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from core.errors import ConfigError

log = logging.getLogger(__name__)

# HAProxy's other listeners, as Ray Serve 2.60 reads them (ray.serve._private.constants): (variable, default, what).
HAPROXY_PORTS = (
    ("RAY_SERVE_HAPROXY_STATS_PORT", 8404, "HAProxy's stats port"),
    ("RAY_SERVE_HAPROXY_METRICS_PORT", 9101, "HAProxy's metrics port"),
)
END_GRACE_S = 0.7  # between SIGTERM and SIGKILL for what is left (Ray's agents ignore SIGTERM without a GCS)
WATCH_EVERY_S = 1.0  # how often the watchdog notes the instance's processes


def listed(names: list[str], most: int = 8) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _psutil():
    """psutil, as Ray ships it (``ray/thirdparty_files``), without importing Ray."""
    try:
        import psutil
    except ImportError:
        import importlib.util

        spec = importlib.util.find_spec("ray")
        if spec is None or not spec.submodule_search_locations:
            raise
        sys.path.append(os.path.join(spec.submodule_search_locations[0], "thirdparty_files"))
        import psutil
    return psutil


def _alive(process) -> bool:
    """Whether ``process`` (a ``psutil.Process``: pid and start time) still runs; an unreaped zombie does not."""
    psutil = _psutil()
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(process) -> str:
    psutil = _psutil()
    try:
        name = process.name()
    except psutil.Error:
        name = "?"
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        command = ""
    if len(command) > 160:
        command = command[:157] + "..."
    return f"pid {process.pid} ({name}{': ' + command if command and command != name else ''})"


def _short(process) -> str:
    psutil = _psutil()
    try:
        return f"{process.name()} {process.pid}"
    except psutil.Error:
        return f"pid {process.pid}"


def _owner(process) -> str:
    """Whose a Serve app's HAProxy is (empty for any other process): the running server above its HAProxyManager
    actor and raylet, or a server that has ended and left it behind."""
    psutil = _psutil()
    try:
        if "haproxy" not in process.name() or "haproxy" not in " ".join(process.cmdline()[1:]):
            return ""
        parents = process.parents()
        names = [p.name() for p in parents]
    except psutil.Error:
        return ""
    if not any(name.startswith("ray::HAProxyMan") for name in names):
        return f", the HAProxy of a Serve app that has ended, left behind (end it: kill {process.pid})"
    above = [parents[i + 1] for i, name in enumerate(names[:-1]) if name == "raylet" and parents[i + 1].pid != 1]
    server = f" (its server: {_describe(above[0])})" if above else ""
    return f", the HAProxy of a running Serve app{server}"


def _haproxies(node_ids: set[str]) -> list:
    """The HAProxy processes of these Ray nodes: Serve writes each node's configuration under a folder named by the
    node's id (``/tmp/haproxy-serve/<node id>/haproxy.cfg``), and HAProxy's command line names it."""
    psutil = _psutil()
    if not node_ids:
        return []
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        command = " ".join(process.info["cmdline"] or ())
        if "haproxy" in (process.info["name"] or "") and any(f"/{node}/" in command for node in node_ids):
            found.append(process)
    return found


def end_processes(processes, grace_s: float = END_GRACE_S) -> list[str]:
    """SIGTERM to every process still running, SIGKILL to those left after ``grace_s``; what was ended."""
    psutil = _psutil()
    running = [p for p in {p.pid: p for p in processes}.values() if p.pid != os.getpid() and _alive(p)]
    ended = sorted((_short(p) for p in running), key=lambda name: not name.startswith(("haproxy", "gcs", "raylet")))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for process in running:
            try:
                process.send_signal(sig)
            except psutil.Error:
                pass
        deadline = time.monotonic() + grace_s
        while running and time.monotonic() < deadline:
            time.sleep(0.05)
            running = [p for p in running if _alive(p)]  # a zombie no init reaps counts as ended
    return ended


class _Instance:
    """This process's view of the local Ray instance it runs: the processes it has seen in its tree, the node's id,
    and the watchdog (which is never ended with the rest)."""

    def __init__(self) -> None:
        self.known: dict[int, object] = {}
        self.node_ids: set[str] = set()
        self.watchdog: subprocess.Popen | None = None
        self.watch_pipe: int | None = None
        self.lock = threading.RLock()

    def note(self) -> None:
        """Add this process's descendants as they are now."""
        psutil = _psutil()
        try:
            children = psutil.Process().children(recursive=True)
        except psutil.Error:
            return
        with self.lock:
            for child in children:
                if self.watchdog is not None and child.pid == self.watchdog.pid:
                    continue
                if child.pid not in self.known or not _alive(self.known[child.pid]):
                    self.known[child.pid] = child

    def note_node(self) -> None:
        """Remember the local Ray instance's node id (Serve names HAProxy's folder by it) and tell the watchdog."""
        if os.environ.get("RAY_ADDRESS"):
            return  # a cluster's node: its HAProxy is the cluster's, never this process's to end
        try:
            import ray

            node_id = ray.get_runtime_context().get_node_id()
        except Exception:  # Ray not started: nothing to remember
            return
        self.node_ids.add(node_id)
        if self.watch_pipe is not None:
            try:
                os.write(self.watch_pipe, f"node {node_id}\n".encode())
            except OSError:
                pass

    def leftovers(self) -> list:
        self.note()
        with self.lock:
            return list(self.known.values()) + _haproxies(self.node_ids)


INSTANCE = _Instance()


def start_watchdog() -> None:
    """Start the watchdog (module docstring) for the local Ray instance this process is about to start; once."""
    if INSTANCE.watchdog is not None:
        return
    read_end, write_end = os.pipe()  # EOF on read_end: this process is gone (only it holds write_end)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    try:
        INSTANCE.watchdog = subprocess.Popen(
            [sys.executable, "-m", "serving.instance", "--watch", str(os.getpid()), str(read_end)],
            pass_fds=(read_end,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C or a SIGTERM to the group must not end it before it has looked
        )
    except OSError as exc:
        os.close(write_end)
        log.warning(f"could not start the watchdog that cleans up after a killed server: {exc}")
        return
    finally:
        os.close(read_end)
    INSTANCE.watch_pipe = write_end


def watch(parent_pid: int, fd: int) -> None:
    """The watchdog's loop: note ``parent_pid``'s descendants (and the node ids it writes on ``fd``) until it is gone,
    then end those still running."""
    psutil = _psutil()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        parent = psutil.Process(parent_pid)
    except psutil.Error:
        return
    known: dict[int, object] = {}
    node_ids: set[str] = set()
    pending = b""
    while True:
        ready, _, _ = select.select([fd], [], [], WATCH_EVERY_S)
        if ready:
            data = os.read(fd, 4096)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            node_ids.update(line.decode().split()[1] for line in lines if line.startswith(b"node "))
        if not _alive(parent):
            break
        try:
            children = parent.children(recursive=True)
        except psutil.Error:
            break
        # The descendants now, and those seen before that still run outside the tree (orphans: HAProxy once its
        # actor has gone); the ones that ended are forgotten.
        known = {p.pid: p for p in known.values() if _alive(p)} | {c.pid: c for c in children if c.pid != os.getpid()}
    # Ray ends its own node processes when their driver dies (PR_SET_PDEATHSIG); HAProxy and Ray's agents stay.
    left = [p for p in known.values() if _alive(p)]
    for process in list(left):
        try:
            left += [c for c in process.children(recursive=True) if c.pid != os.getpid()]
        except psutil.Error:
            pass
    ended = end_processes(left + _haproxies(node_ids))
    if ended:
        print(f"serving: ended what the server (pid {parent_pid}) left running: {listed(ended)}", file=sys.stderr)


# -- ports --------------------------------------------------------------------------------------------------------


def port_holders(host: str, port: int) -> list[str] | None:
    """None when ``host:port`` can be listened on; else who listens there: a description per process, empty when
    none is visible to this user."""
    psutil = _psutil()
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        return None  # not an address of this machine's: Serve reports it its own way
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed socket in TIME_WAIT holds nothing
        try:
            probe.bind(address)
            return None
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return None
    holders = []
    try:
        connections = psutil.net_connections("tcp")
    except psutil.Error:
        connections = []
    for pid in sorted({c.pid for c in connections if c.status == psutil.CONN_LISTEN and c.laddr.port == port}):
        if pid is not None:
            try:
                process = psutil.Process(pid)
                holders.append(_describe(process) + _owner(process))
            except psutil.Error:
                holders.append(f"pid {pid}")
    return holders


def check_ports_free(host: str, port: int, metrics_port: int | None = None) -> None:
    """Refuse to start a local instance on a port another process listens on (Ray would wait its whole start-up,
    then fail with a traceback that does not say which port): the app's ``host:port``, the Ray metrics port and, in
    Serve's HAProxy mode, HAProxy's stats and metrics ports.

    :raises ConfigError: naming, per process, the ports it holds and the process (pid, name, command line, and
        whether it is HAProxy left behind by a Serve app that has ended), and the options that choose other ports.
    """
    wanted = [(host, port, "--port", "--port")]
    if metrics_port:
        wanted.append(("0.0.0.0", metrics_port, "--metrics-port", "--metrics-port"))
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        for variable, default, what in HAPROXY_PORTS:
            try:
                value = int(os.environ.get(variable) or default)
            except ValueError:
                raise ConfigError(f"{variable}={os.environ[variable]} is not a port number") from None
            wanted.append(("0.0.0.0", value, f"{what}, {variable}", variable))
    held: dict[str, list[tuple[str, str]]] = {}  # who -> [(where (what), the setting that moves it)]
    for where, number, what, setting in wanted:
        holders = port_holders(where, number)
        if holders is not None:
            who = "; ".join(holders) if holders else "a process this user cannot see"
            held.setdefault(who, []).append((f"{where}:{number} ({what})", setting))
    problems = []
    for who, ports in held.items():
        places = " and ".join(place for place, _ in ports)
        settings = ", ".join(dict.fromkeys(setting for _, setting in ports))
        verb = "is" if len(ports) == 1 else "are"
        problems.append(f"{places} {verb} in use by {who}; stop it, or choose other ports ({settings})")
    if problems:
        raise ConfigError("; ".join(problems))


if __name__ == "__main__" and sys.argv[1:2] == ["--watch"]:
    watch(int(sys.argv[2]), int(sys.argv[3]))
