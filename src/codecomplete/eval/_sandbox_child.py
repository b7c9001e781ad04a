"""The first code that runs inside a sandboxed process (see sandbox.py); stdlib only.

Started as `python -I -B _sandbox_child.py '<json settings>'` in a fresh process. Before the
candidate's code is even read into a code object it: sets the resource limits, restricts
filesystem writes to the scratch directory (Landlock), forbids new processes and sockets
(seccomp-bpf), reports which guards took effect on the status fd, then installs Python-level
guards (an audit hook, which Python code cannot remove) and runs the program.

The limits are applied here rather than in a `preexec_fn`: this is the child's own trusted code,
it runs before any untrusted code, and `preexec_fn` is unsafe in an evaluator that has threads
(https://docs.python.org/3/library/subprocess.html#subprocess.Popen, preexec_fn warning).
Never imported by the package: it is a script.
"""

import ctypes
import json
import os
import platform
import resource
import struct
import sys
import types

settings = json.loads(sys.argv[1])
SCRATCH = os.path.realpath(settings["scratch"])
guards: list[str] = []
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def _set_limits() -> None:
    mib = 1024 * 1024
    limits = {
        resource.RLIMIT_CPU: settings["cpu_s"],
        resource.RLIMIT_AS: settings["memory_mb"] * mib,
        resource.RLIMIT_FSIZE: settings["fsize_mb"] * mib,
        resource.RLIMIT_NOFILE: settings["nofile"],
        resource.RLIMIT_CORE: 0,
        # Counted per user: blocks fork for any uid but root (root is exempt; seccomp covers it).
        resource.RLIMIT_NPROC: 0,
    }
    failed = []
    for which, value in limits.items():
        try:
            # soft == hard: the candidate cannot raise them again.
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):  # e.g. RLIMIT_AS on macOS; reported, the rest still apply
            failed.append(str(which))
    guards.append("rlimits" + (f"(failed:{','.join(failed)})" if failed else ""))


def _prctl_no_new_privs() -> None:
    PR_SET_NO_NEW_PRIVS = 38
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


# --- Landlock: writes only below the scratch directory -----------------------------------------
# https://docs.kernel.org/userspace-api/landlock.html

_LANDLOCK_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}


def _landlock() -> None:
    nums = _LANDLOCK_SYSCALLS.get(platform.machine())
    if nums is None:
        return
    create, add_rule, restrict = nums
    abi = libc.syscall(create, None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # ..._VERSION
    if abi < 1:
        return
    write_file, truncate = 1 << 1, 1 << 14
    # REMOVE_DIR, REMOVE_FILE, MAKE_{CHAR,DIR,REG,SOCK,FIFO,BLOCK,SYM}
    handled = write_file | sum(1 << b for b in range(4, 13))
    if abi >= 2:
        handled |= 1 << 13  # REFER (rename/link across directories)
    if abi >= 3:
        handled |= truncate
    net = 0b11 if abi >= 4 else 0  # BIND_TCP | CONNECT_TCP, no rule allows any port
    # ABSTRACT_UNIX_SOCKET | SIGNAL: no signals to, no abstract sockets of, processes outside.
    scoped = 0b11 if abi >= 6 else 0
    if scoped:
        attr = struct.pack("=QQQ", handled, net, scoped)
    elif net:
        attr = struct.pack("=QQ", handled, net)
    else:
        attr = struct.pack("=Q", handled)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(create, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    file_rights = write_file | (truncate if abi >= 3 else 0)
    for path, rights in ((SCRATCH, handled), ("/dev/null", file_rights)):
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
        if libc.syscall(add_rule, ctypes.c_int(ruleset), ctypes.c_int(1), rule, ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule({path})")
        os.close(fd)
    _prctl_no_new_privs()
    if libc.syscall(restrict, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    os.close(ruleset)
    guards.append(f"landlock-v{abi}" + ("+net" if net else "") + ("+scoped" if scoped else ""))


# --- seccomp-bpf: no new processes, no sockets --------------------------------------------------
# https://docs.kernel.org/userspace-api/seccomp_filter.html

_SECCOMP = {
    # arch, AUDIT_ARCH_*, {denied syscalls}, clone, clone3
    "x86_64": (0xC000003E, {"fork": 57, "vfork": 58, "socket": 41, "io_uring_setup": 425}, 56, 435),
    "aarch64": (0xC00000B7, {"socket": 198, "io_uring_setup": 425}, 220, 435),
}


def _seccomp() -> None:
    spec = _SECCOMP.get(platform.machine())
    if spec is None:
        return
    audit_arch, denied, clone, clone3 = spec
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, EPERM, ENOSYS = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    CLONE_THREAD = 0x00010000
    # Forward jumps are relative; the three return instructions sit at the end.
    deny_ret, allow_ret, enosys_ret = "DENY", "ALLOW", "ENOSYS"
    prog: list = [(LD, 0, 0, 4), (JEQ, 0, deny_ret, audit_arch), (LD, 0, 0, 0)]  # arch, nr
    if platform.machine() == "x86_64":
        prog.append((JGE, deny_ret, 0, 0x40000000))  # the x32 ABI's syscall numbers
    for nr in denied.values():
        prog.append((JEQ, deny_ret, 0, nr))
    prog.append((JEQ, enosys_ret, 0, clone3))  # flags hidden in a struct: make libc fall back to clone
    prog.append((JEQ, 0, allow_ret, clone))
    prog.append((LD, 0, 0, 16))  # clone flags, args[0] (low word)
    prog.append((JSET, allow_ret, deny_ret, CLONE_THREAD))  # threads yes, processes no
    labels = {allow_ret: len(prog), deny_ret: len(prog) + 1, enosys_ret: len(prog) + 2}
    prog += [(RET, 0, 0, ALLOW), (RET, 0, 0, EPERM), (RET, 0, 0, ENOSYS)]

    def rel(target, pc):
        return target if isinstance(target, int) else labels[target] - pc - 1

    raw = b"".join(
        struct.pack("=HBBI", code, rel(jt, pc), rel(jf, pc), k) for pc, (code, jt, jf, k) in enumerate(prog)
    )
    filt = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(filt))  # struct sock_fprog
    fprog_buf = ctypes.create_string_buffer(fprog, len(fprog))
    _prctl_no_new_privs()
    PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog_buf, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
    guards.append("seccomp")


# --- Python-level guards --------------------------------------------------------------------------

_BLOCKED_EVENTS = frozenset(
    {
        "os.fork",
        "os.forkpty",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.kill",
        "os.killpg",
        "subprocess.Popen",
        "pty.spawn",
        "socket.__new__",
        "socket.connect",
        "socket.bind",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.sendto",
        "ctypes.dlopen",
        "ctypes.dlsym",
        "ctypes.cdata",
        "ctypes.call_function",
        "resource.setrlimit",
        "resource.prlimit",
        "sys.remote_exec",
    }
)
_BLOCKED_MODULES = frozenset({"_posixsubprocess", "_ctypes", "ctypes", "cffi"})
_PATH_EVENTS = frozenset(
    {
        "os.remove",
        "os.rmdir",
        "os.mkdir",
        "os.rename",
        "os.link",
        "os.symlink",
        "os.chmod",
        "os.chown",
        "os.truncate",
        "os.utime",
        "shutil.rmtree",
        "shutil.copyfile",
        "shutil.move",
    }
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _inside(path) -> bool:
    if isinstance(path, int):
        return True  # an already-open descriptor: the kernel checked it when it was opened
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return real == SCRATCH or real.startswith(SCRATCH + os.sep)


def _python_guard() -> None:
    preloaded = frozenset(sys.modules)

    def hook(event, args, _blocked=_BLOCKED_EVENTS, _paths=_PATH_EVENTS, _mods=_BLOCKED_MODULES):
        if event in _blocked:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args[0] in _mods and args[0] not in preloaded:
            raise ImportError(f"sandbox: import of {args[0]} is not allowed")
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writing and not _inside(path):
                raise PermissionError(f"sandbox: writing outside the scratch directory: {path}")
        elif event in _paths:
            paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
            if event == "shutil.copyfile":
                paths = paths[-1:]
            if not all(_inside(p) for p in paths):
                raise PermissionError(f"sandbox: {event} outside the scratch directory")

    sys.addaudithook(hook)
    guards.append("audit-hook")


def main() -> None:
    with open(settings["program"], encoding="utf-8") as f:
        source = f.read()
    _set_limits()
    if settings["kernel_guard"]:
        for guard in (_landlock, _seccomp):
            try:
                guard()
            except OSError as exc:  # not fatal: report it; the other layers still apply
                guards.append(f"{guard.__name__[1:]}-failed:{exc}")
    if settings["python_guard"]:
        _python_guard()
    status_fd = settings.get("status_fd")
    if status_fd is not None:
        os.write(status_fd, json.dumps(guards).encode())
        os.close(status_fd)
    del sys.argv[1:]
    sys.argv[0] = "program.py"
    code = compile(source, "program.py", "exec")
    # A fresh __main__: the candidate never sees this script's globals (the loaded libc above).
    module = types.ModuleType("__main__")
    sys.modules["__main__"] = module
    exec(code, module.__dict__)  # inside the sandboxed child, never in the evaluator


if __name__ == "__main__":
    main()
