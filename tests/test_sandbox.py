"""The sandbox against hostile programs, each run for real. The caller (this test process) must
come out unharmed and the run must not count as completed."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys

import pytest

from confroute.runtime import sandbox
from confroute.runtime.sandbox import Limits, run, run_many

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")

QUICK = Limits(timeout_s=3.0, cpu_s=3)


def _uid(result):
    for item in result.isolation:
        if item.startswith("uid:"):
            return int(item[4:])
    return None


def _processes_of(uid):
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    out.append(int(pid))
            except FileNotFoundError:
                pass
    return out


def _caller_ok():
    # the caller can still start processes and its own environment is intact
    assert subprocess.run([sys.executable, "-c", "print(7)"], capture_output=True,
                          text=True).stdout == "7\n"


def test_plain_program_completes_with_output():
    r = run("import sys\nprint('hello')\nprint('err', file=sys.stderr)\n")
    assert r.completed and r.status == "ok" and r.returncode == 0
    assert r.stdout == "hello\n" and r.stderr == "err\n"


def test_isolation_as_root():
    if os.geteuid() != 0:
        pytest.skip("namespaces and a fresh uid need root")
    r = run("import os\nprint(os.getuid(), os.getcwd(), sorted(os.listdir('/tmp')))\n")
    assert r.completed
    uid = _uid(r)
    assert uid is not None and uid >= 200000
    assert "namespaces:mnt,net,pid,ipc" in r.isolation
    assert r.stdout.split()[0] == str(uid)
    assert r.stdout.split(None, 1)[1].strip() == "/tmp/run ['run']"  # an empty private /tmp


def test_infinite_loop_times_out():
    r = run("while True:\n    pass\n", QUICK)
    assert not r.completed and r.timed_out and r.status == "timeout"
    _caller_ok()


def test_fork_bomb_is_contained():
    src = (
        "import os, time\n"
        "n = 0\n"
        "while True:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        while True:\n"            # every child forks on: a real bomb
        "            try:\n"
        "                os.fork()\n"
        "            except OSError:\n"
        "                time.sleep(0.05)\n"
        "    n += 1\n"
        "print('forks', n, flush=True)\n"
        "time.sleep(60)\n"
    )
    limits = Limits(timeout_s=3.0, cpu_s=3, processes=16)
    r = run(src, limits)
    assert not r.completed and r.timed_out
    if os.geteuid() == 0:
        # RLIMIT_NPROC does not bind root: it binds here because the run has its own uid
        forks = int(r.stdout.split()[1])
        assert forks < limits.processes
        assert _processes_of(_uid(r)) == []  # nothing left behind
    _caller_ok()


def test_ten_gigabyte_allocation_fails():
    r = run("x = bytearray(10 * 1024 ** 3)\nprint(len(x))\n", QUICK)
    assert not r.completed and "MemoryError" in r.stderr
    _caller_ok()


def test_a_gigabyte_of_output_is_cut():
    r = run("import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n"
            "    sys.stdout.write(chunk)\n", QUICK)
    assert not r.completed and r.output_exceeded and r.status == "output limit"
    assert len(r.stdout) <= QUICK.output_bytes
    _caller_ok()


def test_killing_the_parent_and_the_caller_fails():
    me = os.getpid()
    hostile = ["import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"]
    if os.geteuid() == 0:  # without a separate uid these would reach the caller (README)
        hostile += [f"import os, signal\nos.kill({me}, signal.SIGKILL)\n",
                    f"import os, signal\nos.killpg({os.getpgid(me)}, signal.SIGKILL)\n"]
    for src in hostile:
        r = run(src, QUICK)
        assert not r.completed, src
    assert os.getpid() == me  # still here
    _caller_ok()


def test_environment_holds_no_keys(monkeypatch):
    secret = "sk-" + secrets.token_hex(8)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("CONFROUTE_CLOUD_KEY", secret)
    src = "import os\nprint(dict(os.environ))\n"
    if os.geteuid() == 0:  # another uid may not read the caller's /proc/PID/environ
        src += (f"try:\n    print(open('/proc/{os.getpid()}/environ').read())\n"
                f"except OSError as e:\n    print('denied', type(e).__name__)\n")
    src += "assert 'OPENAI_API_KEY' in os.environ\n"
    r = run(src, QUICK)
    assert not r.completed and "AssertionError" in r.stderr
    assert secret not in r.stdout and secret not in r.stderr
    assert "CONFROUTE" not in r.stdout
    _caller_ok()


@pytest.fixture
def outside_dir():
    """A folder the caller owns outside /tmp (the run sees a private /tmp), open for others to
    read and search but not to write: like the caller's files."""
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="sandbox-outside-", dir=os.path.dirname(__file__))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


def test_writing_outside_its_directory_fails(outside_dir):
    if os.geteuid() != 0:
        pytest.skip("without a separate uid the program may write where its user may")
    target = os.path.join(outside_dir, "escaped.txt")
    in_tmp = f"/tmp/confroute-escape-{secrets.token_hex(6)}"
    r = run(f"open({target!r}, 'w').write('x')\n", QUICK)
    # Refused, or not there at all when this checkout lies under /tmp (the run's /tmp is private)
    assert not r.completed and ("PermissionError" in r.stderr or
                                (target.startswith("/tmp/") and "FileNotFoundError" in r.stderr))
    assert not os.path.exists(target)
    # /tmp is world-writable on the host: the run sees its own private /tmp instead
    r = run(f"open({in_tmp!r}, 'w').write('x')\nprint('wrote')\n", QUICK)
    assert r.completed and r.stdout == "wrote\n"
    assert not os.path.exists(in_tmp)
    # the caller's working directory and the package are not writable either
    pkg = os.path.join(os.path.dirname(sandbox.__file__), "escaped.py")
    r = run(f"open({pkg!r}, 'w').write('x')\n", QUICK)
    assert not r.completed and not os.path.exists(pkg)


def test_exit_zero_before_the_tests_is_not_a_pass():
    for early in ("import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n",
                  "raise SystemExit\n"):
        r = run(early + "assert False, 'the tests'\nprint('tests ran')\n", QUICK)
        assert r.returncode == 0 and not r.completed and r.status == "exited early", early
        assert "tests ran" not in r.stdout


def test_printing_a_fake_token_is_not_a_pass():
    # the token goes to a private pipe, never stdout, and the program does not know it
    r = run("import os, sys\nos.write(3, b'[]\\nnot-the-token')\nos._exit(0)\n", QUICK)
    assert not r.completed


def test_run_many_keeps_order_and_limit():
    src = "import time\nt0 = time.time()\ntime.sleep(0.3)\nprint(t0, time.time(), {i})\n"
    results = run_many([src.format(i=i) for i in range(4)], QUICK, max_parallel=2)
    assert [int(r.stdout.split()[2]) for r in results] == [0, 1, 2, 3]
    spans = [tuple(map(float, r.stdout.split()[:2])) for r in results]
    # at no start time are more than two runs inside their spans
    assert max(sum(a <= s < b for a, b in spans) for s, _ in spans) <= 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="timeout_s"):
        Limits(timeout_s=0)
    with pytest.raises(ValueError, match="source"):
        run(b"print(1)")
    with pytest.raises(ValueError, match="max_parallel"):
        run_many(["print(1)"], max_parallel=0)


def test_sigterm_is_not_needed_to_stop_a_run_that_ignores_it():
    r = run("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "time.sleep(60)\n", QUICK)
    assert r.timed_out and r.signal == signal.SIGKILL
