"""Trusted half of the code sandbox; never imported by the trainer, run as a separate interpreter.

``sandbox.py`` starts ``python -I -B _sandbox_runner.py`` in a fresh temporary directory, in a new
session, with a scrubbed environment, and writes two length-prefixed JSON frames to its stdin: the
program with the limits, then the tests. This script then, before any untrusted code runs:

1. optionally enters new user/network/mount/PID/IPC/UTS namespaces (``unshare``; the user namespace
   only when not root) and forks into PID 1 of the new PID namespace (it dies with its relay parent
   through ``PR_SET_PDEATHSIG``), which pivots into a minimal root (the interpreter and system
   libraries, read-only) with a fresh ``/proc`` and the work directory as a size-limited tmpfs;
2. forks the **candidate**, which becomes a fresh unprivileged uid (when root), drops all
   capabilities, sets the resource limits, Landlock, the Python audit hook (best effort: PEP 578)
   and seccomp, loads the program and from then on only answers the judge's requests (look up
   names, call a function, run as ``__main__``) with plain data;
3. stays the **judge**: non-dumpable, no capabilities, limits, Landlock and seccomp too; only then
   reads the tests (so they never exist in the candidate's memory), runs them against proxies of
   the program's functions and reports ``<nonce> <kind> <payload>`` lines on the result file
   descriptor, which the candidate never holds.

Each layer that could not be set up is reported, never silently assumed.

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
import select
import signal
import stat
import struct
import sys
import time
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
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_READ, PR_CAPBSET_DROP, PR_SET_SECCOMP = 1, 4, 23, 24, 22
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


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    f = _libc.mount
    f.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    _check(f(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


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


def _enter_namespaces(workdir: str, info: dict, fs: dict) -> None:
    """Unshare, fork (the child returns as PID 1 of the new PID namespace), build its file system.

    ``fs``: ``disk_bytes``/``inodes`` of the work directory's tmpfs, ``owner`` (its uid),
    ``minimal_root`` (pivot into a new root holding only the interpreter and system libraries).
    """
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
    owner = int(fs["owner"]) if uid == 0 else 0
    quota = f"size={int(fs['disk_bytes'])},nr_inodes={int(fs['inodes'])},mode=0700,uid={owner},gid={owner}"
    pivoted = False
    if fs["minimal_root"]:
        try:
            _build_root(workdir, quota)
            os.chdir(workdir)
            _check(_libc.syscall(ctypes.c_long(_PIVOT_ROOT[os.uname().machine]), b".", b"."), "pivot_root")
            _check(_libc.umount2(b".", ctypes.c_int(MNT_DETACH)), "umount the old root")
            pivoted = info["minimal_root"] = True
        except (OSError, KeyError) as exc:
            info["minimal_root"] = f"no: {exc!r}"
    if not pivoted:
        _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, quota)
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    info["disk_quota"] = f"tmpfs {int(fs['disk_bytes']) >> 20} MiB, {int(fs['inodes'])} inodes"
    info["private_proc"] = True
    os.chdir("/")
    try:
        _mount_setattr("/", AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0)
        _mount_setattr(workdir, 0, 0, MOUNT_ATTR_RDONLY)
        info["readonly_root"] = True
    except OSError as exc:
        info["readonly_root"] = f"no: {exc}"
    os.chdir(workdir)


# What the minimal root holds besides the interpreter's own directories: read-only binds of these (a
# symlink is copied as a symlink), an empty /tmp, a fresh /proc and the quota'd work directory.
_ROOT_BINDS = (
    "/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/alternatives",
    "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random",
)  # fmt: skip
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
MNT_DETACH = 2


def _build_root(new_root: str, quota: str) -> None:
    """Mount a small tmpfs on ``new_root`` and fill it; the work directory is a tmpfs inside it."""
    _mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
    paths = [p for p in _ROOT_BINDS if os.path.lexists(p)]
    paths += sorted({sys.base_prefix, sys.prefix} | {p for p in sys.path if p and os.path.isdir(p)})
    for path in paths:
        target = new_root + path
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if os.path.lexists(target):
            continue  # inside an earlier bind (sys.path entries below the prefix)
        if os.path.islink(path):
            os.symlink(os.readlink(path), target)
            continue
        if os.path.isdir(path):
            os.mkdir(target, 0o755)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        _mount(path, target, None, MS_BIND | MS_REC)
    for path in ("/tmp", "/proc", "/etc", os.path.dirname(new_root)):
        os.makedirs(new_root + path, mode=0o755, exist_ok=True)
    os.makedirs(new_root + new_root, mode=0o700, exist_ok=True)
    _mount("tmpfs", new_root + new_root, "tmpfs", MS_NOSUID | MS_NODEV, quota)
    _mount("proc", new_root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _drop_capabilities(bounding_only: bool = False) -> None:
    """Empty the bounding and ambient sets, then (unless ``bounding_only``) the process's own sets."""
    for cap in range(64):
        try:
            if _prctl(PR_CAPBSET_READ, cap) == 1:
                _prctl(PR_CAPBSET_DROP, cap)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                break
            raise
    try:
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass
    if bounding_only:
        return
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
# Plain data between the judge and the candidate: JSON, with every JSON object a tagged value, so
# that exactly these builtin types (never a subclass) cross, and are rebuilt fresh on the other side.
# A value of any other type stays in the candidate; the judge gets an opaque handle (``_Remote``).
_SAFE_INT = 1 << 53
_MAX_DEPTH = 200


class _Unencodable(Exception):
    """A value that is not plain data (and no handle table to park it in)."""


class _Refs:
    """The candidate's table of objects behind handles (one index per object, stable)."""

    def __init__(self) -> None:
        self.objects: list = []
        self.index: dict[int, int] = {}

    def add(self, obj: object) -> int:
        i = self.index.get(id(obj))
        if i is None:
            i = self.index[id(obj)] = len(self.objects)
            self.objects.append(obj)
        return i


def _encode(value: object, refs: _Refs | None = None, depth: int = 0) -> object:
    t = type(value)
    if value is None or t is bool or t is str or t is float:
        return value
    if depth > _MAX_DEPTH:
        raise _Unencodable(f"nesting deeper than {_MAX_DEPTH}")
    if t is int:
        return value if -_SAFE_INT < value < _SAFE_INT else {"~": "int", "v": format(value, "x")}
    if t is list:
        return [_encode(x, refs, depth + 1) for x in value]
    if t is tuple or t is set or t is frozenset:
        return {"~": t.__name__, "v": [_encode(x, refs, depth + 1) for x in value]}
    if t is dict:
        items = value.items()
        return {
            "~": "dict",
            "v": [[_encode(k, refs, depth + 1), _encode(x, refs, depth + 1)] for k, x in items],
        }
    if t is bytes or t is bytearray:
        return {"~": t.__name__, "v": value.hex()}
    if t is complex:
        return {"~": "complex", "v": [value.real, value.imag]}
    if t is _Remote:
        return {"~": "ref", "v": value._ref}
    std = (getattr(t, "__module__", None), getattr(t, "__name__", None))
    if std in _STDLIB:  # rebuilt from its data on the other side: none of this object's code crosses
        return _STDLIB[std](value, refs, depth + 1)
    if refs is None:
        raise _Unencodable(t.__name__)
    return {"~": "ref", "v": refs.add(value)}


def _enc_mapping(value: object, refs: _Refs | None, depth: int) -> object:
    factory = getattr(value, "default_factory", None)
    items = [[_encode(k, refs, depth), _encode(x, refs, depth)] for k, x in dict.items(value)]  # type: ignore[arg-type]
    plain = factory if factory in (int, float, str, list, tuple, dict, set) else None
    return {"~": type(value).__name__, "v": items, "f": plain.__name__ if plain else None}


# Value types of the standard library that references return (MBPP: Counter), sent as plain data.
_STDLIB = {
    ("collections", "Counter"): _enc_mapping,
    ("collections", "OrderedDict"): _enc_mapping,
    ("collections", "defaultdict"): _enc_mapping,
    ("collections", "deque"): lambda v, r, d: {
        "~": "deque",
        "v": [_encode(x, r, d) for x in v],
        "maxlen": v.maxlen if type(v.maxlen) is int else None,
    },
    ("fractions", "Fraction"): lambda v, r, d: {
        "~": "Fraction",
        "v": [_encode(int(v.numerator)), _encode(int(v.denominator))],
    },
    ("decimal", "Decimal"): lambda v, r, d: {"~": "Decimal", "v": str(v)},
}


def _build_std(obj: dict) -> object:
    import collections

    tag, v = obj["~"], obj["v"]
    if tag == "deque":
        maxlen = obj.get("maxlen")
        return collections.deque(v, maxlen if type(maxlen) is int else None)
    if tag == "Fraction":
        import fractions

        return fractions.Fraction(int(v[0]), int(v[1]))
    if tag == "Decimal":
        import decimal

        return decimal.Decimal(str(v))
    items = {k: x for k, x in v}
    if tag == "defaultdict":
        factory = {t.__name__: t for t in (int, float, str, list, tuple, dict, set)}.get(obj.get("f"))  # type: ignore[arg-type]
        return collections.defaultdict(factory, items)
    return getattr(collections, tag)(items)


_STD_TAGS = {"Counter", "OrderedDict", "defaultdict", "deque", "Fraction", "Decimal"}
_BUILD = {
    "int": lambda v: int(v, 16),
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "dict": dict,
    "bytes": bytes.fromhex,
    "bytearray": bytearray.fromhex,
    "complex": lambda v: complex(float(v[0]), float(v[1])),
}


def _decoder(ref_value):  # noqa: ANN001, ANN202 - ref_value(index) -> the referenced object
    def hook(obj: dict) -> object:
        if "~" not in obj:
            return obj  # a message envelope (a plain str-keyed dict at worst)
        tag, v = obj.get("~"), obj.get("v")
        if tag == "ref":
            if type(v) is not int:
                raise ValueError("bad reference")
            return ref_value(v)
        if tag in _STD_TAGS:
            return _build_std(obj)
        build = _BUILD.get(tag)  # type: ignore[arg-type]
        if build is None:
            raise ValueError(f"bad tag {tag!r}")
        if tag == "dict":
            return {k: x for k, x in v}
        return build(v)

    return hook


def _handle_ref(obj: object) -> object:
    if type(obj) is _Remote:
        return {"~": "ref", "v": obj._ref}
    raise TypeError(f"not plain data: {type(obj).__name__}")


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=_handle_ref).encode()


def _send(fd: int, message: object) -> None:
    _send_bytes(fd, _dumps(message))


def _send_bytes(fd: int, data: bytes) -> None:
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


class _Dead(Exception):
    """The candidate stopped answering (timed out past its grace, exited or broke the protocol)."""


def _recv(fd: int, deadline: float | None, max_bytes: int) -> bytes | None:
    """One length-prefixed frame; None on end of file; _Dead past ``deadline``/``max_bytes``."""
    buf, need, header = bytearray(), 4, True
    while True:
        while len(buf) < need:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise _Dead("no answer in time")
            chunk = os.read(fd, min(need - len(buf), 1 << 20))
            if not chunk:
                return None
            buf += chunk
        if not header:
            return bytes(buf)
        need = struct.unpack(">I", buf)[0]
        if need > max_bytes:
            raise _Dead(f"a value of {need} bytes (limit {max_bytes})")
        buf, header = bytearray(), False


# ----------------------------------------------------------------------------------------------
class _TestTimeout(BaseException):
    """Raised by SIGALRM when a single test (or the program itself) exceeds its time limit."""


def _on_alarm(signum: int, frame: object) -> None:
    raise _TestTimeout()


def _normalize(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def _serve(program: str, mode: str, req_fd: int, resp_fd: int, load_timeout: float) -> None:
    """The candidate: load the program, then answer the judge's requests (untrusted from here on).

    Nothing here is trusted after the program ran: the judge only ever accepts plain data from this
    process, and never the verdict.
    """
    signal.signal(signal.SIGALRM, _on_alarm)
    refs = _Refs()

    def guarded(fn, timeout: float) -> dict:  # noqa: ANN001
        signal.setitimer(signal.ITIMER_REAL, max(timeout, 0.001))
        try:
            value = fn()
            signal.setitimer(signal.ITIMER_REAL, 0)
            return {"ok": _encode(value, refs)}
        except _TestTimeout:
            return {"timeout": 1}
        except BaseException as exc:  # noqa: BLE001 - reported to the judge, which decides
            signal.setitimer(signal.ITIMER_REAL, 0)
            return {"raise": [type(exc).__name__[:100], str(exc)[:200]]}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    module = types.ModuleType("solution")
    module.__dict__["__builtins__"] = builtins
    sys.modules["solution"] = module
    try:
        code = compile(program, "<solution>", "exec")
    except BaseException as exc:  # noqa: BLE001
        _send(resp_fd, {"raise": [type(exc).__name__, str(exc)[:200]]})
        return
    if mode == "io":
        _send(resp_fd, {"ok": None})
    else:
        _send(resp_fd, guarded(lambda: exec(code, module.__dict__), load_timeout))

    def ref_value(i: int) -> object:
        return refs.objects[i]

    decode = _decoder(ref_value)
    while True:
        raw = _recv(req_fd, None, 1 << 30)
        if raw is None:
            return
        req = json.loads(raw, object_hook=decode)
        op, timeout = req.get("op"), float(req.get("timeout", 1.0))
        if op == "names":
            found = {}
            for name in req["names"]:
                if isinstance(module.__dict__.get(name), types.ModuleType):
                    found[name] = {"module": str(module.__dict__[name].__name__)}
                elif name in module.__dict__:
                    try:
                        found[name] = {"ok": _encode(module.__dict__[name], refs)}
                    except _Unencodable as exc:
                        found[name] = {"raise": ["TypeError", str(exc)]}
            _send(resp_fd, {"ok": found})
        elif op == "call":  # fn: a name of the module, or a handle
            fn = req["fn"] if not isinstance(req["fn"], str) else module.__dict__.get(req["fn"])
            args = req["args"]
            before = _dumps(_encode(args, refs))
            reply = guarded(lambda fn=fn, a=args: fn(*a[0], **a[1]), timeout)
            after = _encode(args, refs)
            if _dumps(after) != before:
                reply["args"] = after  # the call changed its (mutable) arguments in place
            _send(resp_fd, reply)
        elif op == "getattr":
            _send(resp_fd, guarded(lambda r=req: getattr(r["obj"], r["name"]), timeout))
        elif op == "setattr":
            _send(resp_fd, guarded(lambda r=req: setattr(r["obj"], r["name"], r["value"]), timeout))
        elif op == "main":
            out = io.StringIO()

            def run_main(stdin: str = req["stdin"], out: io.StringIO = out) -> str:
                old = sys.stdin, sys.stdout
                sys.stdin, sys.stdout = io.StringIO(stdin), out
                try:
                    exec(code, {"__name__": "__main__", "__builtins__": builtins})
                except SystemExit as exc:
                    if exc.code not in (None, 0):
                        raise
                finally:
                    sys.stdin, sys.stdout = old
                return out.getvalue()

            _send(resp_fd, guarded(run_main, timeout))


class _CandidateError(Exception):
    """An exception raised by the candidate whose type is not a builtin exception."""


class _Remote:
    """An opaque handle to a non-plain object in the candidate: attributes and calls are remote.

    It equals only itself and has no truth value, so no test can pass by comparing to it.
    """

    __slots__ = ("_ref", "_peer")

    def __init__(self, ref: int, peer: _Peer) -> None:
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_peer", peer)

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._peer.ask({"op": "getattr", "obj": self, "name": name})

    def __setattr__(self, name: str, value: object) -> None:
        try:
            encoded = _encode(value)
        except _Unencodable as exc:
            raise TypeError(f"sandbox: only plain data can be passed to the program (got {exc})") from None
        self._peer.ask({"op": "setattr", "obj": self, "name": name, "value": encoded})

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self._peer.call(self, args, kwargs)

    def __bool__(self) -> bool:
        raise TypeError("a value of a non-plain type returned by the program has no truth value here")

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<object {self._ref} of the program>"


class _Peer:
    """The judge's side of the candidate: requests under the current test's deadline."""

    def __init__(self, req_fd: int, resp_fd: int, max_bytes: int) -> None:
        self.req_fd, self.resp_fd, self.max_bytes = req_fd, resp_fd, max_bytes
        self.deadline: float | None = None
        self.dead = ""
        self.outstanding = False
        self.last: dict = {}
        self.handles: dict[int, _Remote] = {}
        self.decode = _decoder(self._handle)

    def _handle(self, i: int) -> _Remote:
        if i not in self.handles:
            self.handles[i] = _Remote(i, self)
        return self.handles[i]

    def receive(self, deadline: float | None) -> dict:
        try:
            raw = _recv(self.resp_fd, deadline, self.max_bytes)
            if raw is None:
                raise _Dead("the program's process exited")
            reply = json.loads(raw, object_hook=self.decode)
            if not isinstance(reply, dict):
                raise _Dead("malformed answer")
            return reply
        except _Dead as exc:
            self.dead = self.dead or str(exc)
            raise
        except Exception as exc:  # noqa: BLE001 - anything that does not decode is a broken answer
            self.dead = f"malformed answer: {type(exc).__name__}"
            raise _Dead(self.dead) from None

    def ask(self, request: dict) -> object:
        if self.dead:
            raise _Dead(self.dead)
        left = 1.0 if self.deadline is None else self.deadline - time.monotonic()
        request["timeout"] = max(left, 0.001)
        data = _dumps(request)  # before sending: a TypeError here leaves the protocol in step
        try:
            _send_bytes(self.req_fd, data)
        except OSError as exc:
            self.dead = f"the program's process exited ({exc})"
            raise _Dead(self.dead) from None
        self.outstanding = True
        reply = self.receive(None if self.deadline is None else self.deadline + 0.5)
        self.outstanding = False
        if "ok" in reply:
            self.last = reply
            return reply["ok"]
        if "timeout" in reply:
            raise _TestTimeout()
        name, msg = (list(reply.get("raise") or []) + ["Exception", ""])[:2]
        cls = getattr(builtins, str(name), None)
        if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
            try:
                exc = cls(str(msg))
            except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError needs five arguments
                exc = _CandidateError(f"{name}: {msg}")
        else:
            exc = _CandidateError(f"{name}: {msg}")
        raise exc

    def call(self, fn: object, args: tuple, kwargs: dict) -> object:
        try:
            payload = [list(args), dict(kwargs)]
            raw = _encode(payload)
        except _Unencodable as exc:
            raise TypeError(f"sandbox: only plain data can be passed to the program (got {exc})") from None
        self.last = {}
        value = self.ask({"op": "call", "fn": fn, "args": raw})
        changed = self.last.get("args")
        if changed is not None:
            _write_back(payload, json.loads(_dumps(changed), object_hook=self.decode))
        return value


def _write_back(before: list, after: object) -> None:
    """Apply the candidate's in-place changes of mutable arguments to the judge's own objects."""
    if type(after) is not list or len(after) != 2 or type(after[0]) is not list or type(after[1]) is not dict:
        return
    pairs = list(zip(before[0], after[0])) + [(before[1][k], after[1].get(k)) for k in before[1]]  # noqa: B905 - Python 3.8 (no strict=)
    for old, new in pairs:
        if type(old) is not type(new):
            continue
        if type(old) in (list, bytearray):
            old[:] = new
        elif type(old) in (dict, set):
            old.clear()
            old.update(new)


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


class _Proxy:
    """A module-level function of the program, as the tests see it."""

    __slots__ = ("_name", "_peer", "__name__")

    def __init__(self, name: str, peer: _Peer) -> None:
        self._name, self._peer, self.__name__ = name, peer, name

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self._peer.call(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<function {self._name} of the program>"


def _judge(job: dict, peer: _Peer, report) -> None:  # noqa: ANN001
    """Run the tests here, in a process that never runs the program's code; only plain data comes in."""
    signal.signal(signal.SIGALRM, _on_alarm)
    t_test = float(job["test_timeout_s"])
    tests = job["tests"]

    def timed(fn) -> tuple[str, str]:  # noqa: ANN001
        peer.deadline = time.monotonic() + t_test
        signal.setitimer(signal.ITIMER_REAL, t_test + 2.0)  # backstop for slow test code itself
        try:
            fn()
            return "pass", ""
        except _TestTimeout:
            return "timeout", ""
        except _Dead as exc:
            return ("timeout" if "in time" in str(exc) else "error"), str(exc)[:200]
        except AssertionError as exc:
            return "fail", (f"AssertionError {exc}")[:200]
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: it is a failed test
            return "error", (f"{type(exc).__name__}: {exc}")[:200]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def dead_after(status: str) -> bool:  # the judge's own alarm fired while an answer was owed
        return status == "timeout" and peer.outstanding and _pending(peer)

    peer.deadline = time.monotonic() + t_test + 0.5
    try:
        loaded = peer.receive(peer.deadline)
        status, msg = (
            ("pass", "")
            if "ok" in loaded
            else ("timeout", "")
            if "timeout" in loaded
            else ("error", "{}: {}".format(*tuple((list(loaded.get("raise") or []) + ["", ""])[:2])))
        )
    except _Dead as exc:
        status, msg = "timeout", str(exc)
    if job["mode"] == "io":
        if status != "pass":
            report("program", f"{status} {msg}")
            return
        for i, test in enumerate(tests):
            expected = _normalize(test["output"])

            def run_io(stdin: str = test["input"], expected: list = expected) -> None:
                out = peer.ask({"op": "main", "stdin": stdin})
                if type(out) is not str or _normalize(out) != expected:
                    raise AssertionError("wrong output")

            status, msg = timed(run_io)
            report("test", f"{i} {status} {msg}")
            if peer.dead or dead_after(status):
                return
        return
    report("program", f"{status} {msg}")
    if status != "pass":
        return
    ns: dict = {"__builtins__": builtins, "__name__": "__test__"}
    trusted = job.get("trusted_prefix") or ""
    if trusted:  # the task's own code (HumanEval's prompt: imports and helpers), run here, not by the program
        status, msg = timed(lambda: exec(compile(trusted, "<prompt>", "exec"), ns))
        if status != "pass":
            report("setup", f"{status} prompt: {msg}")
            return
    codes = [_compiled(t, f"<test {i}>") for i, t in enumerate(tests)]
    setup = _compiled(job["test_setup"], "<test setup>") if job["test_setup"] else None
    wanted = set().union(*(_global_names(c) for c in codes + [setup] if isinstance(c, types.CodeType)))
    entry = job.get("entry_point")
    wanted = sorted(n for n in wanted if (n not in ns and not hasattr(builtins, n)) or n == entry)
    module = types.ModuleType("solution")
    sys.modules["solution"] = module
    if wanted:
        status, msg = timed(lambda: _bind(peer.ask({"op": "names", "names": wanted}), peer, ns, module))
        if status != "pass":
            report("setup", f"{status} {msg}")
            return
    if setup is not None:
        status, msg = timed(lambda: _run_code(setup, ns))
        report("setup", f"{status} {msg}")
        if status != "pass":
            return
    for i, code in enumerate(codes):
        status, msg = timed(lambda code=code: _run_code(code, dict(ns)))
        report("test", f"{i} {status} {msg}")
        if peer.dead or dead_after(status):
            return


def _compiled(source: str, name: str) -> types.CodeType | BaseException:
    try:
        return compile(source, name, "exec")
    except BaseException as exc:  # noqa: BLE001 - a broken test is that test's error
        return exc


def _run_code(code: types.CodeType | BaseException, ns: dict) -> None:
    if isinstance(code, BaseException):
        raise code
    exec(code, ns)


def _pending(peer: _Peer) -> bool:
    """After a judge-side timeout: wait briefly for the answer still owed; True if it never comes."""
    try:
        peer.receive(time.monotonic() + 0.5)
        peer.outstanding = False
        return False
    except _Dead:
        return True


_NO_IMPORT = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "webbrowser", "pydoc"}


def _stdlib_module(name: str) -> types.ModuleType | None:
    """A standard-library module imported by the judge itself (never the program's patched copy)."""
    import importlib

    top = name.split(".")[0]
    known = getattr(sys, "stdlib_module_names", None)
    if top in _NO_IMPORT or top.startswith("_") or (known is not None and top not in known):
        return None
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001
        return None


def _bind(found: object, peer: _Peer, ns: dict, module: types.ModuleType) -> None:
    if type(found) is not dict:
        raise TypeError("malformed answer")
    for name, reply in found.items():
        if type(name) is not str or type(reply) is not dict:
            continue
        if type(reply.get("module")) is str:  # e.g. the program's "import math": the judge's own math
            mod = _stdlib_module(reply["module"])
            if mod is not None:
                ns[name] = mod
                setattr(module, name, mod)
            continue
        value = reply.get("ok")
        if isinstance(value, _Remote):  # a function or class: calls go to the program's process
            value = _Proxy(name, peer)
        if "ok" in reply:
            ns[name] = value
            setattr(module, name, value)


def _readable_by_all(path: str) -> bool:
    """Every directory from ``/`` down to ``path`` can be entered by any user."""
    path = os.path.realpath(path)
    while True:
        try:
            if not os.stat(path).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        if path == "/":
            return True
        path = os.path.dirname(path)


def _read_frame(fd: int) -> dict:
    buf = bytearray()
    while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
        need = 4 - len(buf) if len(buf) < 4 else 4 + struct.unpack(">I", buf[:4])[0] - len(buf)
        chunk = os.read(fd, min(need, 1 << 20))
        if not chunk:
            raise EOFError("job truncated")
        buf += chunk
    return json.loads(bytes(buf[4:]).decode("utf-8"))


def _candidate(head: dict, req_fd: int, resp_fd: int, workdir: str, unprivileged: bool) -> None:
    """Child: become an unprivileged user, lock itself down, then load and serve the program."""
    info: dict = {}
    layers = head["layers"]
    uid = int(head["candidate_uid"])
    if unprivileged:
        _drop_capabilities(bounding_only=True)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by the uid change: set after it
    _drop_capabilities()
    _set_rlimits(head["limits"])
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
    _send(resp_fd, info)
    for name in ("ctypes", "_ctypes", "ctypes._endian"):
        sys.modules.pop(name, None)
    globals().pop("_libc", None)
    program, mode, timeout = head.pop("program"), head["mode"], float(head["test_timeout_s"])
    head.clear()
    try:
        _serve(program, mode, req_fd, resp_fd, timeout)
    finally:
        os._exit(0)


def main() -> None:
    head = _read_frame(0)
    result_fd = int(head.pop("result_fd"))
    workdir = os.getcwd()
    info: dict = {"uid": os.getuid()}
    layers = head["layers"]
    root = os.getuid() == 0
    if layers["namespaces"]:
        try:
            _enter_namespaces(workdir, info, head["fs"])
        except OSError as exc:
            info["namespaces"] = f"no: {exc}"
    unprivileged = root and bool(head["candidate_uid"])
    if unprivileged and info.get("minimal_root") is not True and not _readable_by_all(sys.base_prefix):
        unprivileged = False  # the stdlib would be unreadable to another user (e.g. under /root)
        info["unprivileged_uid"] = "no: the interpreter is not readable by other users"
    if unprivileged and "disk_quota" not in info:  # no namespaces: the host work directory, no quota
        os.chown(workdir, int(head["candidate_uid"]), int(head["candidate_uid"]))
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        for fd in (result_fd, req_w, resp_r):
            os.close(fd)
        try:
            _candidate(head, req_r, resp_w, workdir, unprivileged)
        finally:  # never fall through into the judge's code below
            os._exit(1)
    os.close(req_r)
    os.close(resp_w)
    head.pop("program", None)
    nonce = ""

    def report(kind: str, payload: str) -> None:
        line = (f"{nonce} {kind} {payload}").replace("\n", " ") + "\n"
        os.write(result_fd, line.encode("utf-8", "replace"))

    try:
        _prctl(PR_SET_DUMPABLE, 0)  # no /proc/<pid>/mem, fd or environ of the judge for anyone
        _drop_capabilities()
        _set_rlimits(head["limits"])
        if layers["landlock"]:
            _landlock(workdir, {})
        if layers["seccomp"]:
            _seccomp({})
        job = _read_frame(0)
        nonce = job.pop("nonce")
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        peer = _Peer(req_w, resp_r, int(head["limits"]["value_bytes"]))
        try:
            child_info = peer.receive(None)
        except _Dead:
            child_info = {"candidate": "did not start"}
        info.update(child_info)
        info.setdefault("unprivileged_uid", int(head["candidate_uid"]) if unprivileged else False)
        info["verdict"] = "separate judge process"
        report("isolation", json.dumps(info, sort_keys=True))
        job["mode"] = head["mode"]
        job["test_timeout_s"] = head["test_timeout_s"]
        _judge(job, peer, report)
    finally:
        report("done", "")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
