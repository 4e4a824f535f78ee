"""Runs untrusted (model-generated) Python in a separate, limited process. The one place in the
package where model output is executed.

Each run:

* starts a launcher (the caller's Python) in a new session and process group;
* as root, the launcher moves into new mount, network, PID and IPC namespaces, mounts empty
  tmpfs on /tmp, /var/tmp and /dev/shm, and runs the program as PID 1 of the new PID namespace
  under a fresh unprivileged uid/gid (random per run, no supplementary groups): it cannot signal
  the caller, write the caller's files, reach the network, or leave processes behind (the
  kernel kills a PID namespace with its init; the init dies with the launcher);
* sets rlimits: CPU seconds, address space, file size, open files, processes (RLIMIT_NPROC
  counts per uid, which is why the uid is fresh: it does not bind root);
* gives it an allow-listed environment (PATH, HOME, TMPDIR, LANG: no keys, no CONFROUTE_*), an
  empty working directory, and /dev/null as stdin;
* reads stdout/stderr up to a cap and kills the whole group at the wall-clock timeout or when
  the cap is passed.

A run counts as *completed* only if the program ran to its last line: the runner writes a
random token to a private pipe after the program returns, so ``sys.exit(0)`` or ``os._exit(0)``
half-way is not a success. Not a security boundary against a determined attacker (see README).
"""
from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0         # wall clock, whole run
    cpu_s: int = 10                 # RLIMIT_CPU per process
    memory_bytes: int = 1 << 30     # RLIMIT_AS per process
    file_bytes: int = 16 << 20      # RLIMIT_FSIZE, and the size of each private tmpfs
    processes: int = 32             # RLIMIT_NPROC for the run's uid
    open_files: int = 64            # RLIMIT_NOFILE
    output_bytes: int = 1 << 20     # stdout and stderr each; more kills the run

    def __post_init__(self):
        for k, v in self.__dict__.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ValueError(f"Limits.{k} must be a positive number, got {v!r}")


@dataclass(frozen=True)
class RunResult:
    completed: bool            # the program ran to its end (token seen) and exited 0
    returncode: Optional[int]  # the program's exit code; None if killed by a signal
    signal: Optional[int]      # the signal that ended it, if any
    timed_out: bool
    output_exceeded: bool
    stdout: str
    stderr: str
    seconds: float
    isolation: Tuple[str, ...]  # what the launcher set up (namespaces, uid), for the record

    @property
    def status(self) -> str:
        if self.timed_out:
            return "timeout"
        if self.output_exceeded:
            return "output limit"
        if self.completed:
            return "ok"
        if self.signal is not None:
            return f"signal {self.signal}"
        if self.returncode == 0:
            return "exited early"  # exit 0 before the end: sys.exit(0) before the tests
        return f"exit {self.returncode}"


# The runner executes main.py in fresh globals and, only if it returns, writes the token to fd 3.
_RUNNER = r"""
import os, sys
def _run():
    t = os.read(4, 256)
    os.close(4)
    with open("main.py", encoding="utf-8") as f:
        src = f.read()
    exec(compile(src, "main.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(3, t)
    os._exit(0)
_run()
"""

# The launcher runs as the caller's user. Config arrives as JSON on stdin.
_LAUNCHER = r"""
import ctypes, json, os, resource, sys
cfg = json.loads(sys.stdin.read())
os.close(0)
os.open("/dev/null", os.O_RDONLY)
done = cfg["done_fd"]
iso = []
libc = ctypes.CDLL(None, use_errno=True)
NS = 0x00020000 | 0x40000000 | 0x20000000 | 0x08000000  # NEWNS, NEWNET, NEWPID, NEWIPC
work = cfg["workdir"]
uid = cfg["uid"]
if uid is not None and libc.unshare(NS) == 0:
    ok = libc.mount(None, b"/", None, 16384 | (1 << 18), None) == 0  # MS_REC|MS_PRIVATE
    opts = ("size=%d,mode=1777" % cfg["tmpfs_bytes"]).encode()
    for d in (b"/tmp", b"/var/tmp", b"/dev/shm"):
        if os.path.isdir(d):
            # MS_NOSUID | MS_NODEV | MS_NOEXEC
            ok = ok and libc.mount(b"tmpfs", d, b"tmpfs", 2 | 4 | 8, opts) == 0
    if ok:
        work = "/tmp/run"
        os.mkdir(work, 0o700)
        iso.append("namespaces:mnt,net,pid,ipc")
    else:
        iso.append("namespaces:mount-failed")
else:
    iso.append("namespaces:none")
with open(os.path.join(work, "main.py"), "w", encoding="utf-8") as f:
    f.write(cfg["source"])
if uid is not None:
    os.chown(work, uid, uid)
    os.chown(os.path.join(work, "main.py"), uid, uid)
    iso.append("uid:%d" % uid)
os.write(done, (json.dumps(iso) + "\n").encode())
tr, tw = os.pipe()
os.write(tw, cfg["token"].encode())
os.close(tw)
def wait_status(pid):
    _, st = os.waitpid(pid, 0)
    return 128 + os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)
# A root-owned init between the launcher and the program: PID 1 of the new namespace (when there
# is one), so the whole namespace dies with it, and a process the program may not signal.
pid = os.fork()
if pid == 0:
    libc.prctl(1, 9)  # PR_SET_PDEATHSIG SIGKILL: the init dies with the launcher
    g = os.fork()
    if g == 0:
        try:
            hi_done, hi_tr = os.dup(done) + 100, os.dup(tr) + 100  # past 3 and 4 before moving
            os.dup2(done, hi_done)
            os.dup2(tr, hi_tr)
            os.dup2(hi_done, 3)
            os.dup2(hi_tr, 4)
            os.closerange(5, 1 << 16)
            L = cfg["limits"]
            for r, v in ((resource.RLIMIT_CPU, L["cpu_s"]),
                         (resource.RLIMIT_AS, L["memory_bytes"]),
                         (resource.RLIMIT_FSIZE, L["file_bytes"]),
                         (resource.RLIMIT_NPROC, L["processes"]),
                         (resource.RLIMIT_NOFILE, L["open_files"]), (resource.RLIMIT_CORE, 0)):
                resource.setrlimit(r, (int(v), int(v)))
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            os.chdir(work)
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work,
                   "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
            os.execve(cfg["python"], [cfg["python"], "-I", "-c", cfg["runner"]], env)
        except BaseException as e:
            os.write(2, ("sandbox launcher: %r\n" % (e,)).encode())
        os._exit(126)
    os.close(tr)
    os.close(done)
    os._exit(wait_status(g))
os.close(tr)
os.close(done)
sys.exit(wait_status(pid))
"""


def _world_runnable(path: str) -> bool:
    """Every directory on the way world-searchable and the file world-executable: the fresh uid
    has no other rights."""
    path = os.path.realpath(path)
    try:
        if not os.stat(path).st_mode & 0o001:
            return False
        d = os.path.dirname(path)
        while True:
            if not os.stat(d).st_mode & 0o001:
                return False
            if d == "/":
                return True
            d = os.path.dirname(d)
    except OSError:
        return False


def _isolated() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and sys.platform.startswith("linux")


def sandbox_python() -> str:
    """The interpreter the programs run under. As root the programs run as a fresh uid, which
    may not be able to reach the caller's interpreter (e.g. under a 0700 /root): then the first
    world-runnable python3 on the system."""
    override = os.environ.get("CONFROUTE_SANDBOX_PYTHON")
    if override:
        return override
    if not _isolated():
        return sys.executable
    for p in (sys.executable, "/usr/bin/python3", shutil.which("python3") or ""):
        if p and _world_runnable(p):
            return os.path.realpath(p)
    raise ValueError("no python3 that an unprivileged uid may run: set CONFROUTE_SANDBOX_PYTHON")


_SLOTS = threading.BoundedSemaphore(int(os.environ.get("CONFROUTE_SANDBOX_PARALLEL", "2")))


def run(source: str, limits: Limits = Limits(), python: Optional[str] = None) -> RunResult:
    """Runs ``source`` as a Python program in the sandbox and returns what happened. At most
    ``CONFROUTE_SANDBOX_PARALLEL`` (default 2) runs execute at once in this process."""
    if not isinstance(source, str):
        raise ValueError(f"source must be a str, got {type(source).__name__}")
    if not isinstance(limits, Limits):
        raise ValueError("limits must be a confroute.runtime.sandbox.Limits")
    with _SLOTS:
        return _run(source, limits, python or sandbox_python())


def run_many(sources: Sequence[str], limits: Limits = Limits(), max_parallel: int = 2,
             python: Optional[str] = None) -> List[RunResult]:
    """Runs each source (as :func:`run`), up to ``max_parallel`` at once; results in order."""
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
    py = python or sandbox_python()
    with ThreadPoolExecutor(max_workers=max_parallel) as ex:
        return list(ex.map(lambda s: run(s, limits, py), sources))


def _run(source: str, limits: Limits, python: str) -> RunResult:
    token = secrets.token_hex(16)
    uid = 200000 + secrets.randbelow(1 << 24) if _isolated() else None
    workdir = tempfile.mkdtemp(prefix="confroute-sandbox-")
    done_r, done_w = os.pipe()
    cfg = {"source": source, "token": token, "uid": uid, "workdir": workdir, "python": python,
           "runner": _RUNNER, "done_fd": done_w, "limits": limits.__dict__,
           "tmpfs_bytes": max(int(limits.file_bytes) * 4, 1 << 20)}
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _LAUNCHER],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(done_w,),
                                start_new_session=True, env={"PATH": "/usr/bin:/bin"},
                                cwd=workdir)
    except BaseException:
        os.close(done_r)
        os.close(done_w)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    os.close(done_w)
    try:
        try:
            proc.stdin.write(json.dumps(cfg).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        out, err, done, timed_out, exceeded = _collect(proc, done_r, limits, t0, uid)
    finally:
        if proc.returncode is None:  # an error in the caller: nothing reaped yet, still ours
            _kill_group(proc)
            proc.wait()
        _close_pipes(proc)
        os.close(done_r)
        shutil.rmtree(workdir, ignore_errors=True)
    rc = proc.returncode
    sig = None
    if rc is not None and rc < 0:
        sig, rc = -rc, None
    elif rc is not None and rc > 128:
        sig, rc = rc - 128, None
    head, _, tail = done.partition(b"\n")
    try:
        isolation = tuple(json.loads(head.decode())) if head else ()
    except (ValueError, UnicodeDecodeError):
        isolation = ()
    completed = (tail == token.encode() and rc == 0 and not timed_out and not exceeded)
    return RunResult(completed, rc, sig, timed_out, exceeded,
                     out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                     time.monotonic() - t0, isolation)


def _collect(proc, done_r, limits: Limits, t0: float, uid: Optional[int]):
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray(),
            done_r: bytearray()}
    sel = selectors.DefaultSelector()
    for fd in bufs:
        sel.register(fd, selectors.EVENT_READ)
    timed_out = exceeded = False
    deadline = t0 + limits.timeout_s
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(timeout=left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf = bufs[key.fd]
                room = (limits.output_bytes if key.fd != done_r else 4096) - len(buf)
                buf += chunk[:max(room, 0)]
                if len(chunk) > room:
                    exceeded = True
            if exceeded:
                break
    finally:
        sel.close()
    # EOF on stdout means the launcher has exited but is not yet reaped, so its group id is
    # still ours: killing the group now cannot hit a reused id.
    _kill_group(proc)
    proc.wait()
    if (timed_out or exceeded) and uid is not None:
        _wait_gone(uid, time.monotonic() + 10.0)
    return (bytes(bufs[proc.stdout.fileno()]), bytes(bufs[proc.stderr.fileno()]),
            bytes(bufs[done_r]), timed_out, exceeded)


def _kill_group(proc) -> None:
    """SIGKILL the run's process group (the launcher's session). With namespaces, the program's
    PID namespace dies with its init, which dies with the launcher."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(uid: int, deadline: float) -> None:
    """A killed PID namespace is torn down by the kernel after its init dies, not at once:
    wait until no process of the run's uid is left, so that a killed run is over on return."""
    while time.monotonic() < deadline:
        alive = False
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if os.stat(f"/proc/{pid}").st_uid == uid:
                        alive = True
                        break
                except OSError:
                    pass
        if not alive:
            return
        time.sleep(0.01)


def _close_pipes(proc) -> None:
    for f in (proc.stdout, proc.stderr):
        if f is not None:
            f.close()
