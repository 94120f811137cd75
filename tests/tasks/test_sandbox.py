# ruff: noqa: E501 - the hostile programs are literal source strings
"""Hostile programs are contained: reward 0, the test process unaffected, bounded time, no leftovers.

Each program attempts an attack and its test passes only if the attack worked, so reward 0 means
the attack failed (or the program was stopped). Side effects are also checked from outside: files
next to the work directory, a listening socket, a SIGUSR1 handler in this process, leftover
processes. The suite runs under several layer combinations; a program is only run where the
layers claim to contain it (docs/tasks.md lists what each layer covers).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import stat
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from megatron_bgpo.tasks import get_task
from megatron_bgpo.tasks.code import CodeExample
from megatron_bgpo.tasks.sandbox import RUNNER, Job, SandboxConfig, run_job

ALL = frozenset({"full", "kernel", "no_ns", "guard"})
NS = frozenset({"full", "kernel"})  # a private /proc needs the PID and mount namespaces
SECCOMP = frozenset({"full", "kernel", "no_ns"})
MODES = {
    "full": {},
    "kernel": {"python_guard": False},
    "no_ns": {"namespaces": False},
    "guard": {"namespaces": False, "landlock": False, "seccomp": False},
}
LIMITS = SandboxConfig(timeout_s=4, test_timeout_s=1, cpu_time_s=4, memory_mb=512, max_output_bytes=1 << 20)


@dataclass(frozen=True)
class Hostile:
    name: str
    program: str
    tests: tuple[str, ...] = ("assert True",)
    modes: frozenset[str] = ALL


HOSTILE = [
    Hostile("fork_bomb", "import os\nwhile True:\n    os.fork()\n", modes=SECCOMP),
    Hostile(
        "fork_many",
        "import os, time\npids = []\nfor _ in range(100):\n    pid = os.fork()\n    if pid == 0:\n"
        "        time.sleep(30)\n        os._exit(0)\n    pids.append(pid)\n",
        ("assert len(pids) == 100",),
    ),
    Hostile(
        "multiprocessing",
        "import multiprocessing as mp\nps = [mp.Process(target=print) for _ in range(20)]\n"
        "for p in ps:\n    p.start()\n",
    ),
    Hostile("subprocess", "import subprocess\nsubprocess.run(['touch', '@OUT@.sub'])\n"),
    Hostile("os_system", "import os\nRC = os.system('touch @OUT@.sys')\n", ("assert RC == 0",)),
    Hostile("exec", "import os\nos.execv('/bin/sh', ['sh', '-c', 'touch @OUT@.exec'])\n"),
    Hostile("posix_spawn", "import os\nos.posix_spawn('/bin/touch', ['touch', '@OUT@.spawn'], {})\n"),
    Hostile("infinite_loop", "while True:\n    pass\n"),
    Hostile("infinite_tests", "def f():\n    while True:\n        pass\n", ("f()", "f()", "f()", "f()")),
    Hostile("sleep_forever", "import time\ntime.sleep(10**6)\n"),
    Hostile(
        "swallow_timeouts",
        "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass\n",
    ),
    Hostile("huge_allocation", "x = bytearray(10**11)\n", ("assert len(x) > 0",)),
    Hostile("memory_growth", "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 2**20))\n"),
    Hostile(
        "thread_bomb",
        "import threading, time\nts = []\nfor _ in range(5000):\n"
        "    t = threading.Thread(target=time.sleep, args=(60,), daemon=True)\n    t.start()\n    ts.append(t)\n",
        ("assert len(ts) == 5000",),
    ),
    Hostile(
        "write_outside", "open('@OUT@', 'w').write('pwned')\n", ("assert open('@OUT@').read() == 'pwned'",)
    ),
    Hostile("write_outside_os_open", "import os\nfd = os.open('@OUT@.2', os.O_WRONLY | os.O_CREAT)\n"),
    Hostile("write_dev_shm", "open('/dev/shm/@TAG@', 'w').write('pwned')\n"),
    Hostile(
        "symlink_escape",
        "import os\nos.symlink('@VICTIM@', 'link')\nopen('link', 'w').write('pwned')\n",
        ("assert open('@VICTIM@').read() == 'pwned'",),
    ),
    Hostile("delete_outside", "import os\nos.remove('@VICTIM@')\n"),
    Hostile("chmod_outside", "import os\nos.chmod('@VICTIM@', 0o777)\n", modes=ALL - {"no_ns"}),
    Hostile("env_secret", "import os\nSECRET = os.environ.get('@SECRET@')\n", ("assert SECRET is not None",)),
    Hostile(
        "parent_environ",
        "import os\nfound = []\nfor pid in os.listdir('/proc'):\n    try:\n"
        "        if b'@SECRET@' in open('/proc/' + pid + '/environ', 'rb').read():\n            found.append(pid)\n"
        "    except (OSError, ValueError):\n        pass\n",
        ("assert found",),
        modes=NS,
    ),
    Hostile(
        "tcp_connect",
        "import socket\ns = socket.create_connection(('127.0.0.1', @PORT@), timeout=2)\ns.sendall(b'pwned')\n",
    ),
    Hostile(
        "udp_send",
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'pwned', ('127.0.0.1', @PORT@))\n",
    ),
    Hostile("dns", "import socket\nsocket.getaddrinfo('example.com', 80)\n"),
    Hostile("kill_test_process", "import os, signal\nos.kill(@PID@, signal.SIGUSR1)\n"),
    Hostile("kill_parent", "import os, signal\nos.kill(os.getppid(), signal.SIGUSR1)\n"),
    Hostile(
        "pidfd_signal",
        "import os, signal\nfd = os.pidfd_open(@PID@)\nsignal.pidfd_send_signal(fd, signal.SIGUSR1)\n",
    ),
    Hostile(
        "ctypes_kill",
        "import ctypes\nRC = ctypes.CDLL(None).kill(@PID@, 10)\n",
        ("assert RC == 0",),
    ),
    Hostile("flood_stdout", "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"),
    Hostile("flood_stderr", "import os\nwhile True:\n    os.write(2, b'y' * 65536)\n"),
    Hostile(
        "huge_file",
        "f = open('big.bin', 'wb')\nfor _ in range(64):\n    f.write(b'0' * 2**20)\nf.close()\n",
        ("import os\nassert os.path.getsize('big.bin') == 64 * 2**20",),
    ),
    Hostile("exit_zero_early", "import sys\nsys.exit(0)\n"),
    Hostile("os_exit_early", "import os\nos._exit(0)\n"),
    Hostile(
        "forge_results",
        "import os\nfor fd in range(3, 30):\n    try:\n"
        "        os.write(fd, b'x test 0 pass\\n' * 3 + b'x done \\n')\n    except OSError:\n        pass\nos._exit(0)\n",
    ),
    Hostile(
        "stack_overflow",
        "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\nf(0)\n",
    ),
    Hostile("escape_session", "import os, time\nos.setsid()\ntime.sleep(10**6)\n"),
]

BENIGN = [  # must still pass under every layer combination
    Job("def add(a, b):\n    return a + b\n", ("assert add(1, 2) == 3", "assert add('a', 'b') == 'ab'")),
    Job(
        "import json, math, re, collections, heapq, itertools, functools, fractions, decimal\n"
        "def f():\n    open('scratch.txt', 'w').write('ok')\n    return open('scratch.txt').read()\n",
        ("assert f() == 'ok'", "assert math.isqrt(17) == 4"),
    ),
    Job(
        "import threading\nout = []\nts = [threading.Thread(target=out.append, args=(i,)) for i in range(4)]\n"
        "for t in ts:\n    t.start()\nfor t in ts:\n    t.join()\n",
        ("assert sorted(out) == [0, 1, 2, 3]",),
    ),
    Job("print(sum(map(int, input().split())))\n", ({"input": "2 3\n", "output": "5"},), mode="io"),
]


def _runner_processes() -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if str(RUNNER).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("mode", list(MODES))
def test_hostile_programs_are_contained(mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = f"bgpo-hostile-{secrets.token_hex(4)}"
    out = tmp_path / "pwned"
    victim = tmp_path / "victim.txt"
    victim.write_text("intact")
    victim.chmod(0o644)
    secret_name, secret_value = f"BGPO_TEST_SECRET_{secrets.token_hex(4)}", secrets.token_hex(16)
    monkeypatch.setenv(secret_name, secret_value)
    received: list[int] = []
    old_handler = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    tcp.setblocking(False)
    port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    udp.setblocking(False)
    subs = {"@OUT@": str(out), "@VICTIM@": str(victim), "@SECRET@": secret_name, "@PORT@": str(port)}
    subs |= {"@PID@": str(os.getpid()), "@TAG@": tag}

    def fill(text: str) -> str:
        for key, value in subs.items():
            text = text.replace(key, value)
        return text

    hostile = [h for h in HOSTILE if mode in h.modes]
    assert len(hostile) >= 20
    config = replace(LIMITS, **MODES[mode])
    task = get_task("code", sandbox_config=config, workers=6)
    examples = [CodeExample(h.name, "attack", tuple(fill(t) for t in h.tests)) for h in hostile]
    completions = [f"<answer>\n```python\n{fill(h.program)}```\n</answer>" for h in hostile]
    cwd, env = os.getcwd(), dict(os.environ)
    start = time.monotonic()
    try:
        scores = task.score_batch(completions, examples)
        elapsed = time.monotonic() - start
        roomy = replace(config, timeout_s=60, test_timeout_s=30)  # no timeouts on a loaded machine
        benign = [run_job(job, roomy) for job in BENIGN]
    finally:
        signal.signal(signal.SIGUSR1, old_handler)
    try:
        connections = []
        try:
            connections.append(tcp.accept())
        except BlockingIOError:
            pass
        try:
            datagram = udp.recv(100)
        except BlockingIOError:
            datagram = b""
    finally:
        tcp.close()
        udp.close()
    shm = Path("/dev/shm") / tag
    if shm.exists():
        shm.unlink()
        pytest.fail("a program wrote to /dev/shm")

    isolation = task.sandbox.isolation
    if mode in ("full", "kernel"):
        assert isolation.get("namespaces") and isolation.get("seccomp") and isolation.get("landlock"), (
            isolation
        )
    if mode == "guard":
        assert isolation.get("python_guard") and "seccomp" not in isolation, isolation
    contained = {h.name: s.reward for h, s in zip(hostile, scores, strict=True)}
    assert {k: v for k, v in contained.items() if v != 0.0} == {}
    assert not any(s.correct for s in scores)
    # The test process is unaffected.
    assert received == [] and connections == [] and datagram == b""
    assert os.getcwd() == cwd and dict(os.environ) == env
    assert victim.read_text() == "intact" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim.txt"]
    # Bounded time: 6 workers, each job killed after LIMITS.timeout_s at the latest.
    assert elapsed < 90, f"{elapsed:.0f}s"
    # Benign programs still work under the same layers.
    assert [r.all_passed for r in benign] == [True] * len(BENIGN), [r.message for r in benign]
    # No process is left behind (PID-namespace init dies with its relay; process groups are killed).
    deadline = time.monotonic() + 5
    while _runner_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _runner_processes() == []


def test_timeout_and_output_limits_are_reported() -> None:
    config = replace(LIMITS, timeout_s=2, test_timeout_s=0.5)
    start = time.monotonic()
    slow = run_job(Job("import time\ntime.sleep(100)\n", ("assert True",)), config)
    assert slow.status in ("timeout", "program_error") and slow.passed == 0, slow
    assert time.monotonic() - start < 10
    loud = run_job(Job("while True:\n    print('x' * 10000)\n", ("assert True",)), config)
    assert loud.status == "output_limit" and len(loud.stdout) <= config.keep_output_bytes
    roomy = replace(LIMITS, timeout_s=60, test_timeout_s=30)  # no timeouts on a loaded machine
    partial = run_job(Job("def f(x):\n    return x\n", ("assert f(1) == 1", "assert f(1) == 2", "f(")), roomy)
    assert partial.statuses == ["pass", "fail", "error"] and partial.fraction == pytest.approx(1 / 3)
    broken = run_job(Job("def f(:\n", ("assert True",)), roomy)
    assert broken.status == "program_error" and "SyntaxError" in broken.message


UNPRIVILEGED_SCRIPT = r"""
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("sbx", sys.argv[1])
sbx = importlib.util.module_from_spec(spec)
sys.modules["sbx"] = sbx
spec.loader.exec_module(sbx)
cfg = sbx.SandboxConfig(python=sys.executable, timeout_s=30, test_timeout_s=10)
out, secret = sys.argv[2], sys.argv[3]
os.environ["BGPO_UNPRIV_SECRET"] = secret
jobs = [
    sbx.Job("def f():\n    return 1\n", ("assert f() == 1",)),
    sbx.Job("open(%r, 'w').write('x')\n" % out, ("assert True",)),
    sbx.Job("import os\nos.fork()\n", ("assert True",)),
    sbx.Job("import socket\nsocket.socket()\n", ("assert True",)),
    sbx.Job(
        "import os\nfound = [p for p in os.listdir('/proc') if p.isdigit() and b'BGPO_UNPRIV_SECRET' in "
        "open('/proc/%s/environ' % p, 'rb').read()]\n",
        ("assert found",),
    ),
]
results = [sbx.run_job(job, cfg) for job in jobs]
print(json.dumps({"passed": [r.passed for r in results], "isolation": results[0].isolation}))
"""


def test_unprivileged_user_gets_user_namespace() -> None:
    """As a non-root user (nobody, via setpriv), with a system Python: the user-namespace path."""
    import json
    import shutil
    import subprocess
    import tempfile

    python = shutil.which("python3", path="/usr/bin:/bin")
    setpriv = shutil.which("setpriv")
    if os.getuid() != 0 or not python or not setpriv:
        pytest.skip("needs root (to become nobody), setpriv and a system python3")
    as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", python]
    check = subprocess.run(
        [*as_nobody, "-c", "import sys; assert sys.version_info >= (3, 8)"], capture_output=True
    )
    if check.returncode != 0:
        pytest.skip(f"cannot run {python} as nobody: {check.stderr[-200:]!r}")
    out = f"/tmp/bgpo-unpriv-{secrets.token_hex(4)}"  # world-writable: only the sandbox stops the write
    # A world-readable copy of the two sandbox files: the checkout itself may sit in a private folder.
    tasks_dir = Path(__file__).resolve().parents[2] / "megatron_bgpo" / "tasks"
    copy_dir = Path(tempfile.mkdtemp(prefix="bgpo-sbx-"))
    copy_dir.chmod(0o755)
    for name in ("sandbox.py", "_sandbox_runner.py"):
        shutil.copy(tasks_dir / name, copy_dir / name)
        (copy_dir / name).chmod(0o644)
    sandbox_py = copy_dir / "sandbox.py"
    proc = subprocess.run(
        [*as_nobody, "-c", UNPRIVILEGED_SCRIPT, str(sandbox_py), out, "s3cr3t"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    try:
        assert proc.returncode == 0, proc.stderr[-2000:]
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        if "user" not in (report["isolation"].get("namespaces") or []):
            pytest.skip(f"unprivileged user namespaces unavailable: {report['isolation']}")
        assert report["passed"] == [1, 0, 0, 0, 0], report
        assert report["isolation"].get("seccomp") and report["isolation"].get("landlock"), report
    finally:
        shutil.rmtree(copy_dir, ignore_errors=True)
        assert not os.path.exists(out)
