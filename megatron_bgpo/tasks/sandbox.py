"""Run untrusted Python programs and their tests in a separate, locked-down process.

Each job gets a fresh temporary directory (removed in every outcome), a scrubbed environment, a
new session (so the whole process group can be killed), resource limits, an output cap and a
wall-clock timeout. Inside the child, ``_sandbox_runner.py`` adds the kernel-level layers that the
machine allows: namespaces (network, mount, PID, ...), a minimal root, a tmpfs disk quota, an
unprivileged uid, Landlock and seccomp, plus a best-effort Python audit hook; and it splits into a
judge that runs the tests and a candidate that runs the program and hands over only plain data.
What held for a run is returned in :attr:`ExecutionResult.isolation`. See ``docs/tasks.md`` for
the exact guarantees and limits.

Many jobs run in parallel in a bounded pool of threads, each managing one subprocess
(:meth:`Sandbox.run_many`).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import selectors
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

RUNNER = Path(__file__).with_name("_sandbox_runner.py")


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and isolation layers of one sandboxed run (all per job)."""

    timeout_s: float = 10.0  # wall clock for the whole job (interpreter start-up included)
    test_timeout_s: float = 4.0  # per test, and for loading the program
    cpu_time_s: int = 10  # RLIMIT_CPU (SIGXCPU, then SIGKILL one second later)
    memory_mb: int = 1024  # RLIMIT_AS (virtual address space)
    max_processes: int = 256  # RLIMIT_NPROC: counts all processes+threads of the uid; root exempt
    max_file_mb: int = 16  # RLIMIT_FSIZE: largest file the program may write
    max_open_files: int = 256  # RLIMIT_NOFILE
    max_output_bytes: int = 1 << 20  # stdout+stderr; the job is killed beyond this
    keep_output_bytes: int = 2048  # how much of stdout/stderr is kept for diagnostics
    python: str = sys.executable  # interpreter running the program
    site_packages: bool = False  # False: ``python -S``, stdlib only (faster start, less to attack)
    namespaces: bool = True  # user (if not root) / net / mount / pid / ipc / uts namespaces
    landlock: bool = True  # writes only beneath the work directory; no TCP; scoped signals
    seccomp: bool = True  # no new processes, exec, sockets, ptrace, foreign signals, mounts
    python_guard: bool = True  # audit hook: defense in depth only
    tmp_root: str | None = None  # parent of the per-job temporary directories
    disk_mb: int = 64  # size of the work directory's tmpfs (namespaces): all files together
    max_inodes: int = 4096  # files + directories in that tmpfs
    minimal_root: bool = True  # namespaces: pivot into a root of only the interpreter and system libraries
    unprivileged: bool = True  # when the trainer is root: run the program as a fresh unused uid
    max_value_mb: int = 16  # largest value (serialised) the program may hand to the judge


@dataclass(frozen=True)
class Job:
    """A program and its tests.

    ``mode="assert"``: the program is loaded as module ``solution`` in the candidate process; in
    the judge, ``trusted_prefix``, then ``test_setup`` and each test snippet run with the program's
    names the tests use bound to proxies (``from solution import f`` works); a test passes when it
    raises nothing. ``mode="io"``: each test is ``{"input": str, "output": str}``; the program runs
    as ``__main__`` with that stdin and passes when its stdout matches (trailing whitespace
    ignored), compared by the judge.
    """

    program: str
    tests: tuple[str, ...] | tuple[dict[str, str], ...]
    test_setup: str = ""
    mode: Literal["assert", "io"] = "assert"
    trusted_prefix: str = ""  # the task's own code the tests may use (HumanEval's prompt); run by the judge
    entry_point: str | None = None  # a name of trusted_prefix that the program's definition replaces


@dataclass
class ExecutionResult:
    """Outcome of one job. ``status`` is ``ok`` when the runner finished, else why it did not."""

    statuses: list[str]  # per test: pass / fail / error / timeout / not_run
    status: str  # ok / program_error / setup_error / timeout / output_limit / crashed / sandbox_error
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    message: str = ""
    isolation: dict = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def passed(self) -> int:
        return sum(s == "pass" for s in self.statuses)

    @property
    def total(self) -> int:
        return len(self.statuses)

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total


def _scrubbed_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _kill_group(proc: subprocess.Popen) -> None:
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


def _rmtree(path: str) -> bool:
    """Delete ``path`` and all below it; any depth (one open directory at a time), no symlink followed.

    Never raises; returns whether ``path`` is gone. Entries that cannot be deleted are skipped.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        cur = os.open(path, flags)
    except OSError:
        return not os.path.lexists(path)
    names: list[str] = []
    stuck: set[tuple[int, int]] = set()
    while True:
        sub = None
        try:
            os.fchmod(cur, 0o700)  # a directory the program made read-only or untraversable
        except OSError:
            pass
        with os.scandir(cur) as entries:
            for entry in entries:
                try:
                    key = (entry.inode(), os.fstat(cur).st_ino)
                    if key in stuck:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        sub = os.open(entry.name, flags, dir_fd=cur)
                        names.append(entry.name)
                        break
                    os.unlink(entry.name, dir_fd=cur)
                except OSError:
                    stuck.add(key)
        if sub is not None:
            os.close(cur)
            cur = sub
            continue
        if not names:
            os.close(cur)
            break
        parent = os.open("..", flags, dir_fd=cur)
        inode = os.fstat(cur).st_ino
        os.close(cur)
        cur, name = parent, names.pop()
        try:
            os.rmdir(name, dir_fd=cur)
        except OSError:
            stuck.add((inode, os.fstat(cur).st_ino))
    try:
        os.rmdir(path)
    except OSError:
        logger.error("sandbox: could not remove the work directory %s", path)
    return not os.path.lexists(path)


_UID_BASE = 1 << 30  # candidate uids: 2**30 + a random 24-bit number, unused on ordinary hosts


def _frame(part: dict) -> bytes:
    data = json.dumps(part).encode()
    return struct.pack(">I", len(data)) + data


def run_job(job: Job, config: SandboxConfig = SandboxConfig()) -> ExecutionResult:
    """Run one job synchronously; never raises for anything the program does."""
    start = time.monotonic()
    n_tests = len(job.tests)
    workdir = tempfile.mkdtemp(prefix="bgpo-sandbox-", dir=config.tmp_root)
    os.chmod(workdir, 0o700)
    read_fd, write_fd = os.pipe()
    nonce = secrets.token_hex(16)
    uid = _UID_BASE + secrets.randbelow(1 << 24) if config.unprivileged and os.getuid() == 0 else 0
    head = {  # read by the runner before it forks the program's process
        "program": job.program,
        "mode": job.mode,
        "test_timeout_s": config.test_timeout_s,
        "result_fd": write_fd,
        "candidate_uid": uid,
        "fs": {
            "disk_bytes": config.disk_mb << 20,
            "inodes": config.max_inodes,
            "owner": uid,
            "minimal_root": config.minimal_root,
        },
        "layers": {
            "namespaces": config.namespaces,
            "landlock": config.landlock,
            "seccomp": config.seccomp,
            "python_guard": config.python_guard,
        },
        "limits": {
            "cpu_s": config.cpu_time_s,
            "memory_bytes": config.memory_mb << 20,
            "file_bytes": config.max_file_mb << 20,
            "open_files": config.max_open_files,
            "processes": config.max_processes,
            "value_bytes": config.max_value_mb << 20,
        },
    }
    tests = {  # read by the judge only, after the fork: never in the program's memory
        "tests": list(job.tests),
        "test_setup": job.test_setup,
        "trusted_prefix": job.trusted_prefix,
        "entry_point": job.entry_point,
        "nonce": nonce,
    }
    payload = b"".join(_frame(part) for part in (head, tests))
    try:
        proc = subprocess.Popen(
            [config.python, "-I", "-B", *(() if config.site_packages else ("-S",)), str(RUNNER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=_scrubbed_env(workdir),
            start_new_session=True,
            pass_fds=(write_fd,),
        )
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        _rmtree(workdir)
        return ExecutionResult(["not_run"] * n_tests, "sandbox_error", message=f"cannot start: {exc}")
    os.close(write_fd)
    try:
        return _supervise(proc, read_fd, payload, nonce, n_tests, config, start)
    finally:
        _kill_group(proc)
        proc.wait()
        os.close(read_fd)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        _rmtree(workdir)


def _supervise(
    proc: subprocess.Popen,
    read_fd: int,
    payload: bytes,
    nonce: str,
    n_tests: int,
    config: SandboxConfig,
    start: float,
) -> ExecutionResult:
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    deadline = start + config.timeout_s
    sel = selectors.DefaultSelector()
    bufs: dict[int, bytearray] = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    results = bytearray()
    sel.register(proc.stdout.fileno(), selectors.EVENT_READ)
    sel.register(proc.stderr.fileno(), selectors.EVENT_READ)
    sel.register(read_fd, selectors.EVENT_READ)
    stdin_fd, to_send = proc.stdin.fileno(), memoryview(payload)  # the job, written without blocking
    os.set_blocking(stdin_fd, False)
    sel.register(stdin_fd, selectors.EVENT_WRITE)
    output_seen, status = 0, ""
    while sel.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            status = "timeout"
            break
        for key, _ in sel.select(timeout=remaining):
            if key.fd == stdin_fd:
                try:
                    to_send = to_send[os.write(stdin_fd, to_send[:65536]) :]
                except (BrokenPipeError, BlockingIOError) as exc:
                    to_send = to_send[:0] if isinstance(exc, BrokenPipeError) else to_send
                if not to_send:
                    sel.unregister(stdin_fd)
                    proc.stdin.close()
                continue
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fd)
            elif key.fd == read_fd:
                results += chunk
                if len(results) > 4096 + 512 * (n_tests + 4):  # far more than the runner writes
                    status = "output_limit"
            else:
                output_seen += len(chunk)
                buf = bufs[key.fd]
                buf += chunk[: max(0, config.keep_output_bytes - len(buf))]
                if output_seen > config.max_output_bytes:
                    status = "output_limit"
        if status:
            break
    sel.close()
    if status:
        _kill_group(proc)
    try:
        returncode = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        status = status or "timeout"
        _kill_group(proc)
        returncode = proc.wait()
    statuses = ["not_run"] * n_tests
    isolation: dict = {}
    done, message = False, ""
    prefix = nonce + " "
    for raw in results.decode("utf-8", "replace").splitlines():
        if not raw.startswith(prefix):
            continue  # forged or garbled line
        kind, _, rest = raw[len(prefix) :].partition(" ")
        if kind == "isolation":
            try:
                isolation = json.loads(rest)
            except ValueError:
                pass
        elif kind == "test":
            idx, _, rest2 = rest.partition(" ")
            verdict, _, msg = rest2.partition(" ")
            if idx.isdigit() and int(idx) < n_tests and statuses[int(idx)] == "not_run":
                statuses[int(idx)] = verdict
                if verdict != "pass" and not message:
                    message = f"test {idx}: {verdict} {msg}".strip()
        elif kind in ("program", "setup"):
            verdict, _, msg = rest.partition(" ")
            if verdict != "pass":
                status = status or f"{kind}_error"
                message = f"{kind}: {verdict} {msg}".strip()
        elif kind == "done":
            done = True
    if not status:
        status = "ok" if done else "crashed"
    stdout = bytes(bufs[proc.stdout.fileno()]).decode("utf-8", "replace")
    stderr = bytes(bufs[proc.stderr.fileno()]).decode("utf-8", "replace")
    if status == "crashed" and not message:
        message = f"runner exited with {returncode} before finishing; stderr: {stderr[-300:]}"
    return ExecutionResult(
        statuses, status, returncode, stdout, stderr, message, isolation, time.monotonic() - start
    )


class Sandbox:
    """A bounded pool that runs many jobs in parallel (threads, each managing one subprocess).

    On first use it runs a trivial job as a probe; if that fails with the requested kernel layers
    (e.g. a kernel or container that forbids them), it retries with fewer layers and logs a warning,
    so a misconfigured machine degrades loudly instead of scoring every program 0.
    """

    def __init__(self, config: SandboxConfig | None = None, workers: int | None = None) -> None:
        self.config = config or SandboxConfig()
        self.workers = workers or max(1, min(8, os.cpu_count() or 1))
        self._probed = False
        self._lock = threading.Lock()
        self.isolation: dict = {}

    def probe(self) -> dict:
        """Check (once) that a trivial program passes; drop layers that break it. Returns isolation."""
        with self._lock:
            if self._probed:
                return self.isolation
            job = Job("def f():\n    return 1\n", ("assert f() == 1",))
            candidates = [self.config]
            for layer in ("seccomp", "landlock", "namespaces"):
                if getattr(candidates[-1], layer):
                    candidates.append(replace(candidates[-1], **{layer: False}))
            for cfg in candidates:
                result = run_job(job, replace(cfg, timeout_s=max(cfg.timeout_s, 30.0)))
                if result.all_passed:
                    if cfg != self.config:
                        logger.warning(
                            "sandbox: a trivial program failed with the requested isolation; "
                            "running with reduced isolation %s (first failure: %s)",
                            {k: getattr(cfg, k) for k in ("namespaces", "landlock", "seccomp")},
                            result.message,
                        )
                    self.config = cfg
                    self.isolation = result.isolation
                    break
            else:
                logger.error("sandbox: even a trivial program fails: %s", result.message)
            self._probed = True
            return self.isolation

    def run(self, job: Job) -> ExecutionResult:
        self.probe()
        return run_job(job, self.config)

    def run_many(self, jobs: Sequence[Job]) -> list[ExecutionResult]:
        """Run ``jobs`` with at most ``self.workers`` processes at a time; results in input order."""
        self.probe()
        if not jobs:
            return []

        def safe(job: Job) -> ExecutionResult:
            try:
                return run_job(job, self.config)
            except Exception as exc:  # noqa: BLE001 - e.g. no disk space for the temp dir
                logger.error("sandbox: could not run a job: %r", exc)
                return ExecutionResult(["not_run"] * len(job.tests), "sandbox_error", message=repr(exc))

        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs)), thread_name_prefix="sandbox") as ex:
            return list(ex.map(safe, jobs))
