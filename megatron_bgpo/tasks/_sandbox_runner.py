"""Trusted half of the code sandbox; never imported by the trainer, run as a separate interpreter.

``sandbox.py`` starts ``python -I -B _sandbox_runner.py`` in a fresh temporary directory, in a new
session, with a scrubbed environment, and writes one JSON job to its stdin. This script then, before
any untrusted code runs:

1. optionally enters new user/network/mount/PID/IPC/UTS namespaces (``unshare``; the user namespace
   only when not root), forks so that the untrusted code is PID 1 of the new PID namespace (it dies
   with its relay parent through ``PR_SET_PDEATHSIG``), mounts a fresh ``/proc``, makes every mount
   read-only except the work directory, and drops all capabilities;
2. sets the resource limits (CPU time, address space, processes, file size, open files, no core);
3. optionally restricts itself with Landlock (writes only beneath the work directory, no TCP, no
   signals or abstract UNIX sockets outside its domain);
4. optionally installs a Python audit hook (best effort, bypassable by design: PEP 578);
5. optionally installs a seccomp filter that denies creating processes (threads stay allowed), exec,
   sockets, ptrace, signals to other processes, mounts, namespaces and a few other kernel interfaces.

It then runs the program and its tests and reports ``<nonce> <kind> <payload>`` lines on the result
file descriptor. Each layer that could not be set up is reported, never silently assumed.

Must stay importable by Python >= 3.8 (the sandbox interpreter can be a system Python).
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import io
import json
import os
import resource
import signal
import struct
import sys
import types

# ----------------------------------------------------------------------------------------------
# Linux constants (stable kernel ABI).
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_THREAD = 0x00010000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY = 0x1
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_SECCOMP = 1, 24, 22
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
SYS_MOUNT_SETATTR = 442
SYS_LANDLOCK_CREATE, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT = 444, 445, 446

# Syscalls denied by the seccomp filter, per architecture. clone, clone3 and kill/tkill/tgkill get
# special rules (threads and signals to oneself stay allowed).
_DENIED = (
    "socket socketpair connect bind listen accept accept4 execve execveat fork vfork ptrace "
    "process_vm_readv process_vm_writev mount umount2 pivot_root chroot unshare setns pidfd_open "
    "pidfd_send_signal pidfd_getfd bpf perf_event_open userfaultfd io_uring_setup io_uring_enter "
    "io_uring_register keyctl add_key request_key kexec_load kexec_file_load init_module finit_module "
    "delete_module open_by_handle_at name_to_handle_at reboot swapon swapoff mount_setattr move_mount "
    "open_tree fsopen fsconfig fsmount fspick quotactl acct settimeofday clock_settime adjtimex "
    "sethostname setdomainname syslog vhangup rt_sigqueueinfo rt_tgsigqueueinfo"
).split()
# fmt: off
_SYSCALLS = {
    # x86_64 (AUDIT_ARCH_X86_64): tested.
    0xC000003E: {
        "socket": 41, "socketpair": 53, "connect": 42, "bind": 49, "listen": 50, "accept": 43,
        "accept4": 288, "execve": 59, "execveat": 322, "fork": 57, "vfork": 58, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "mount": 165, "umount2": 166,
        "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308, "pidfd_open": 434,
        "pidfd_send_signal": 424, "pidfd_getfd": 438, "bpf": 321, "perf_event_open": 298,
        "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "keyctl": 250, "add_key": 248, "request_key": 249, "kexec_load": 246, "kexec_file_load": 320,
        "init_module": 175, "finit_module": 313, "delete_module": 176, "open_by_handle_at": 304,
        "name_to_handle_at": 303, "reboot": 169, "swapon": 167, "swapoff": 168, "mount_setattr": 442,
        "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "quotactl": 179, "acct": 163, "settimeofday": 164, "clock_settime": 227,
        "adjtimex": 159, "sethostname": 170, "setdomainname": 171, "syslog": 103, "vhangup": 153,
        "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
        "clone": 56, "clone3": 435, "kill": 62, "tkill": 200, "tgkill": 234,
    },
    # aarch64 (AUDIT_ARCH_AARCH64), generic syscall table: not exercised by our CI (no such machine);
    # the sandbox's start-up probe falls back to no seccomp if a trivial program fails under it.
    0xC00000B7: {
        "socket": 198, "socketpair": 199, "bind": 200, "listen": 201, "accept": 202, "connect": 203,
        "accept4": 242, "execve": 221, "execveat": 281, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "unshare": 97, "setns": 268, "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438,
        "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 219, "add_key": 217,
        "request_key": 218, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "open_by_handle_at": 265, "name_to_handle_at": 264,
        "reboot": 142, "swapon": 224, "swapoff": 225, "mount_setattr": 442, "move_mount": 429,
        "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "quotactl": 60, "acct": 89, "settimeofday": 170, "clock_settime": 112, "adjtimex": 171,
        "sethostname": 161, "setdomainname": 162, "syslog": 116, "vhangup": 58,
        "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240,
        "clone": 220, "clone3": 435, "kill": 129, "tkill": 130, "tgkill": 131,
    },
}

# fmt: on

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _prctl(option: int, a: int = 0, b: int = 0, c: int = 0, d: int = 0) -> int:
    f = _libc.prctl
    f.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return _check(f(option, a, b, c, d), f"prctl({option})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    f = _libc.mount
    f.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    _check(f(enc(source), enc(target), enc(fstype), flags, None), f"mount {target}")


def _mount_setattr(path: str, flags: int, attr_set: int, attr_clr: int) -> None:
    attr = ctypes.create_string_buffer(struct.pack("<QQQQ", attr_set, attr_clr, 0, 0))
    ret = _libc.syscall(
        ctypes.c_long(SYS_MOUNT_SETATTR),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(path.encode()),
        ctypes.c_uint(flags),
        attr,
        ctypes.c_size_t(32),
    )
    _check(ret, f"mount_setattr {path}")


def _unshare(flags: int) -> None:
    if hasattr(os, "unshare"):
        os.unshare(flags)
    else:
        _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _enter_namespaces(workdir: str, info: dict) -> None:
    """Unshare, fork (the child returns as PID 1 of the new PID namespace), isolate mounts, drop caps."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if uid != 0:
        flags |= CLONE_NEWUSER
    _unshare(flags)
    if uid != 0:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    info["user_namespace"] = uid != 0
    pid = os.fork()
    if pid:  # relay: wait for the namespace's init and exit like it; never runs untrusted code
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF if hasattr(os, "waitstatus_to_exitcode") else 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()  # kill(0, ...) from the untrusted code then reaches only its own namespace
    info["namespaces"] = ["net", "mnt", "pid", "ipc", "uts"] + (["user"] if uid != 0 else [])
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        info["private_proc"] = True
    except OSError as exc:
        info["private_proc"] = f"no: {exc}"
    try:
        _mount(workdir, workdir, None, MS_BIND | MS_REC)
        _mount_setattr("/", AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0)
        _mount_setattr(workdir, 0, 0, MOUNT_ATTR_RDONLY)
        os.chdir(workdir)  # the old cwd still points into the now read-only mount below the bind
        info["readonly_root"] = True
    except OSError as exc:
        info["readonly_root"] = f"no: {exc}"
    _drop_capabilities()
    info["capabilities_dropped"] = True


def _drop_capabilities() -> None:
    cap = 0
    while cap < 64:
        try:
            _prctl(PR_CAPBSET_DROP, cap)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                break
            raise
        cap += 1
    try:
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass
    header = ctypes.create_string_buffer(struct.pack("<Ii", 0x20080522, 0))
    data = ctypes.create_string_buffer(bytes(24))
    _check(_libc.capset(header, data), "capset")


def _set_rlimits(limits: dict) -> None:
    def setlim(res: int, value: int) -> None:
        _, hard = resource.getrlimit(res)
        if hard != resource.RLIM_INFINITY and value > hard:
            value = hard
        resource.setrlimit(res, (value, value))

    cpu = int(limits["cpu_s"])
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1 if hard == resource.RLIM_INFINITY else hard))
    setlim(resource.RLIMIT_AS, int(limits["memory_bytes"]))
    setlim(resource.RLIMIT_FSIZE, int(limits["file_bytes"]))
    setlim(resource.RLIMIT_NOFILE, int(limits["open_files"]))
    setlim(resource.RLIMIT_CORE, 0)
    setlim(resource.RLIMIT_NPROC, int(limits["processes"]))


def _landlock(workdir: str, info: dict) -> None:
    abi = _libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE), None, ctypes.c_size_t(0), ctypes.c_uint(1))
    if abi < 1:
        info["landlock"] = "unavailable"
        return
    write_rights = 0b1_1111_1111_0010  # WRITE_FILE, REMOVE_DIR/FILE, MAKE_{CHAR,DIR,REG,SOCK,FIFO,BLOCK,SYM}
    if abi >= 2:
        write_rights |= 1 << 13  # REFER
    if abi >= 3:
        write_rights |= 1 << 14  # TRUNCATE
    handled = write_rights | ((1 << 15) if abi >= 5 else 0)  # IOCTL_DEV: no device ioctls at all
    attr = struct.pack("<Q", handled)
    if abi >= 4:
        attr += struct.pack("<Q", 0b11)  # deny TCP bind and connect
    if abi >= 6:
        attr += struct.pack("<Q", 0b11)  # scope abstract UNIX sockets and signals to the domain
    buf = ctypes.create_string_buffer(attr)
    fd = _check(
        _libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE), buf, ctypes.c_size_t(len(attr)), ctypes.c_uint(0)),
        "landlock_create_ruleset",
    )

    def allow(path: str, rights: int) -> None:
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            rule = ctypes.create_string_buffer(struct.pack("<Qi", rights, pfd))
            _check(
                _libc.syscall(
                    ctypes.c_long(SYS_LANDLOCK_ADD_RULE),
                    ctypes.c_int(fd),
                    ctypes.c_int(1),
                    rule,
                    ctypes.c_uint(0),
                ),
                f"landlock_add_rule {path}",
            )
        finally:
            os.close(pfd)

    try:
        allow(workdir, write_rights)
        allow("/dev/null", (1 << 1) | ((1 << 14) if abi >= 3 else 0))
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        _check(
            _libc.syscall(ctypes.c_long(SYS_LANDLOCK_RESTRICT), ctypes.c_int(fd), ctypes.c_uint(0)),
            "landlock_restrict_self",
        )
    finally:
        os.close(fd)
    gaps = ("" if abi >= 6 else " (no signal scoping)") + ("" if abi >= 4 else " (no TCP rules)")
    info["landlock"] = f"abi {abi}{gaps}"


def _seccomp(info: dict) -> None:
    arch = _AUDIT_ARCH.get(os.uname().machine)
    table = _SYSCALLS.get(arch) if arch else None
    if table is None:
        info["seccomp"] = f"unsupported architecture {os.uname().machine}"
        return
    # BPF_LD|W|ABS, BPF_JMP|{JEQ,JSET,JGE}|K, BPF_RET|K
    ld, jeq, jset, jge, ret = 0x20, 0x15, 0x45, 0x35, 0x06
    eperm, allow = SECCOMP_RET_ERRNO | errno.EPERM, SECCOMP_RET_ALLOW
    me = os.getpid()
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, eperm), (ld, 0, 0, 0)]
    if arch == 0xC000003E:
        prog += [(jge, 0, 1, 0x40000000), (ret, 0, 0, eperm)]  # no x32 ABI
    # clone3 -> ENOSYS, so that glibc falls back to clone, whose flags (unlike clone3's) BPF can read.
    prog += [(jeq, 0, 1, table["clone3"]), (ret, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS)]
    # clone: threads only (CLONE_THREAD in args[0]); kill/tkill/tgkill: only to oneself (args[0] == pid).
    prog += [(jeq, 0, 4, table["clone"]), (ld, 0, 0, 16), (jset, 0, 1, CLONE_THREAD)]
    prog += [(ret, 0, 0, allow), (ret, 0, 0, eperm)]
    for name in ("kill", "tkill", "tgkill"):
        prog += [(jeq, 0, 4, table[name]), (ld, 0, 0, 16), (jeq, 0, 1, me), (ret, 0, 0, allow)]
        prog += [(ret, 0, 0, eperm)]
    for name in _DENIED:
        if name in table:
            prog += [(jeq, 0, 1, table[name]), (ret, 0, 0, eperm)]
    prog.append((ret, 0, 0, allow))
    code = b"".join(struct.pack("<HBBI", *insn) for insn in prog)
    filt = ctypes.create_string_buffer(code)
    fprog = ctypes.create_string_buffer(struct.pack("<HxxxxxxQ", len(prog), ctypes.addressof(filt)))
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
    info["seccomp"] = f"{len(prog)} instructions"


_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

# Python-level guard (defense in depth only: CPython audit hooks are not a security boundary).
# fmt: off
_BLOCKED_EVENTS = {
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "os.kill", "os.killpg", "pty.spawn", "resource.setrlimit", "resource.prlimit", "ctypes.dlopen",
    "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function", "gc.get_objects", "gc.get_referrers",
    "gc.get_referents", "sys._current_frames", "os.setuid", "socket.__new__",
}
_BLOCKED_MODULES = {"_posixsubprocess", "ctypes", "_ctypes", "cffi", "_cffi_backend", "_xxsubinterpreters"}
_PATH_EVENTS = {
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,), "os.chown": (0,),
    "os.rename": (0, 1), "os.link": (0, 1), "os.symlink": (1,), "os.truncate": (0,), "os.utime": (0,),
    "shutil.rmtree": (0,), "shutil.move": (0, 1), "os.mkfifo": (0,), "os.mknod": (0,),
}
# fmt: on
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _install_guard(workdir: str) -> None:
    root = os.path.realpath(workdir)
    realpath, fspath, audit_error = os.path.realpath, os.fspath, PermissionError

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return True  # an already open descriptor
        try:
            p = realpath(fspath(path))  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001
            return False
        if isinstance(p, bytes):
            p = p.decode("utf-8", "surrogateescape")
        return p == "/dev/null" or p == root or p.startswith(root + os.sep)

    def hook(event: str, args: tuple) -> None:
        if event in _BLOCKED_EVENTS or event.startswith("socket."):
            raise audit_error(f"sandbox: {event} is not allowed")
        if event == "import" and args and args[0] in _BLOCKED_MODULES:
            raise audit_error(f"sandbox: import of {args[0]} is not allowed")
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writing and not inside(path):
                raise audit_error(f"sandbox: writing {path!r} outside the work directory is not allowed")
        positions = _PATH_EVENTS.get(event)
        bad = positions and any(
            i < len(args) and args[i] is not None and not inside(args[i]) for i in positions
        )
        if bad:
            raise audit_error(f"sandbox: {event} outside the work directory is not allowed")

    for mod, names in ((os, ("pidfd_open", "setsid", "setpgid")), (signal, ("pidfd_send_signal",))):
        for name in names:
            if hasattr(mod, name):
                delattr(mod, name)
    sys.addaudithook(hook)


# ----------------------------------------------------------------------------------------------
class _TestTimeout(BaseException):
    """Raised by SIGALRM when a single test (or the program itself) exceeds its time limit."""


def _on_alarm(signum: int, frame: object) -> None:
    raise _TestTimeout()


def _normalize(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def _run(job: dict, report) -> None:  # noqa: ANN001
    signal.signal(signal.SIGALRM, _on_alarm)
    t_test = float(job["test_timeout_s"])
    tests = job["tests"]

    def timed(fn) -> tuple[str, str]:  # noqa: ANN001
        signal.setitimer(signal.ITIMER_REAL, t_test)
        try:
            fn()
            return "pass", ""
        except _TestTimeout:
            return "timeout", ""
        except AssertionError as exc:
            return "fail", f"AssertionError {exc}"[:200]
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: it is a failed test
            return "error", f"{type(exc).__name__}: {exc}"[:200]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    program = job["program"]
    if job["mode"] == "io":
        code = compile(program, "<solution>", "exec")
        for i, test in enumerate(tests):
            out = io.StringIO()

            def run_io(test: dict = test, out: io.StringIO = out) -> None:
                old = sys.stdin, sys.stdout
                sys.stdin, sys.stdout = io.StringIO(test["input"]), out
                try:
                    exec(code, {"__name__": "__main__", "__builtins__": builtins})
                except SystemExit as exc:
                    if exc.code not in (None, 0):
                        raise
                finally:
                    sys.stdin, sys.stdout = old
                if _normalize(out.getvalue()) != _normalize(test["output"]):
                    raise AssertionError("wrong output")

            status, msg = timed(run_io)
            report("test", f"{i} {status} {msg}")
        return

    module = types.ModuleType("solution")
    module.__dict__["__builtins__"] = builtins
    sys.modules["solution"] = module

    def load() -> None:
        exec(compile(program, "<solution>", "exec"), module.__dict__)

    status, msg = timed(load)
    report("program", f"{status} {msg}")
    if status != "pass":
        return
    ns = dict(module.__dict__)
    if job["test_setup"]:
        status, msg = timed(lambda: exec(compile(job["test_setup"], "<test setup>", "exec"), ns))
        report("setup", f"{status} {msg}")
        if status != "pass":
            return
    for i, test in enumerate(tests):
        status, msg = timed(lambda test=test, i=i: exec(compile(test, f"<test {i}>", "exec"), ns))
        report("test", f"{i} {status} {msg}")


def main() -> None:
    job = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    result_fd, nonce = int(job.pop("result_fd")), job.pop("nonce")

    def report(kind: str, payload: str, _fd: int = result_fd, _n: str = nonce) -> None:
        line = f"{_n} {kind} {payload}".replace("\n", " ") + "\n"
        os.write(_fd, line.encode("utf-8", "replace"))

    workdir = os.getcwd()
    info: dict = {"uid": os.getuid()}
    layers = job["layers"]
    if layers["namespaces"]:
        try:
            _enter_namespaces(workdir, info)
        except OSError as exc:
            info["namespaces"] = f"no: {exc}"
    _set_rlimits(job["limits"])
    if layers["landlock"]:
        try:
            _landlock(workdir, info)
        except OSError as exc:
            info["landlock"] = f"no: {exc}"
    if layers["python_guard"]:
        _install_guard(workdir)
        info["python_guard"] = True
    if layers["seccomp"]:
        try:
            _seccomp(info)
        except OSError as exc:
            info["seccomp"] = f"no: {exc}"
    report("isolation", json.dumps(info, sort_keys=True))
    for name in ("ctypes", "_ctypes", "ctypes._endian"):
        sys.modules.pop(name, None)
    globals().pop("_libc", None)
    job["nonce"] = None
    try:
        _run(job, report)
    finally:
        report("done", "")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
