"""Run untrusted Python (model-written HumanEval candidates) in a separate, locked-down process.

Never `exec` in the evaluating process. Each program runs as a fresh `python -I -B` with:

- its own process group (session), a scratch temporary directory as cwd/HOME/TMPDIR, a minimal
  environment, stdin closed, stdout/stderr to size-limited files;
- a wall-clock timeout after which the whole process group is killed (SIGKILL);
- resource limits (CPU seconds, address space, file size, open files, no core, no processes);
- when the kernel offers them: Landlock (writes only below the scratch directory, no TCP),
  seccomp-bpf (fork/vfork/clone of a process and socket() fail with EPERM), and a network
  namespace with no interfaces (`unshare --net`);
- when the evaluator runs as root: the candidate runs as `nobody` (uid 65534), so the process
  limit applies and root-only files are unreadable;
- an audit hook (PEP 578) that refuses fork/exec/subprocess, sockets, ctypes and writes outside
  the scratch directory with a clear error. It is a convenience layer, not a boundary: the
  kernel layers above are what a determined program would meet.

Which layers applied is reported in every `SandboxResult.guards` (docs/eval.md).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

_CHILD = Path(__file__).with_name("_sandbox_child.py")
_NOBODY = 65534

Status = Literal["passed", "failed", "timeout"]


@dataclass(frozen=True)
class SandboxConfig:
    timeout_s: float = 10.0
    """Wall-clock limit; the CPU-time limit is the same number of seconds (rounded up)."""
    memory_mb: int = 1024
    """Address-space limit (RLIMIT_AS) of the candidate's process."""
    fsize_mb: int = 16
    """Largest file the candidate may write (RLIMIT_FSIZE; also caps its stdout/stderr)."""
    nofile: int = 64
    """Open file descriptors (RLIMIT_NOFILE)."""
    kernel_guard: bool = True
    """Landlock + seccomp in the child. Off only to test the other layers."""
    python_guard: bool = True
    """The audit hook in the child. Off only to test that the kernel layers hold on their own."""
    network_namespace: bool = True
    """Wrap the child in `unshare --net` when the machine allows it."""
    drop_root: bool = True
    """When the evaluator is root, run the candidate as uid/gid 65534 (nobody)."""

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be > 0 (--timeout)")
        if self.memory_mb < 64:
            raise ValueError(
                "memory_mb must be at least 64: the interpreter itself needs it (--sandbox-memory-mb)"
            )


@dataclass
class SandboxResult:
    status: Status
    returncode: int | None
    reason: str
    """Why it failed, in a few words: "exit 1: AssertionError", "timeout", "killed by SIGXCPU"..."""
    duration_s: float
    stdout: str = ""
    stderr: str = ""
    guards: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@functools.cache
def _unshare_prefix(as_root: bool) -> tuple[str, ...]:
    """`unshare --net` (root) or `unshare -r --net` (user namespace), if it works here."""
    exe = shutil.which("unshare")
    if exe is None:
        return ()
    for prefix in (
        ((exe, "--net"), (exe, "--map-root-user", "--net"))
        if as_root
        else ((exe, "--map-root-user", "--net"),)
    ):
        try:
            ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return prefix
    return ()


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _reason(returncode: int, stderr: str) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    last = lines[-1][:200] if lines else ""
    return f"exit {returncode}" + (f": {last}" if last else "")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run(program: str, config: SandboxConfig, drop_root: bool, netns: bool) -> SandboxResult:
    as_root = os.geteuid() == 0
    drop = drop_root and as_root
    work = Path(tempfile.mkdtemp(prefix="codecomplete-sandbox-"))
    try:
        scratch = work / "scratch"
        scratch.mkdir()
        prog = work / "program.py"
        prog.write_text(program, encoding="utf-8")
        if drop:
            # The candidate (uid nobody) may enter `work` and read program.py, write only in scratch.
            work.chmod(0o711)
            prog.chmod(0o644)
            os.chown(scratch, _NOBODY, _NOBODY)
        read_fd, write_fd = os.pipe()
        settings = {
            "scratch": str(scratch),
            "program": str(prog),
            "cpu_s": max(1, int(config.timeout_s + 0.999)),
            "memory_mb": config.memory_mb,
            "fsize_mb": config.fsize_mb,
            "nofile": config.nofile,
            "kernel_guard": config.kernel_guard,
            "python_guard": config.python_guard,
            "status_fd": write_fd,
        }
        prefix = _unshare_prefix(as_root and not drop) if netns else ()
        cmd = [*prefix, sys.executable, "-I", "-B", str(_CHILD), json.dumps(settings)]
        env = {"PATH": os.defpath, "HOME": str(scratch), "TMPDIR": str(scratch), "LANG": "C.UTF-8"}
        start = time.monotonic()
        with open(work / "stdout", "wb") as out, open(work / "stderr", "wb") as err:
            try:
                proc = subprocess.Popen(
                    cmd,
                    cwd=scratch,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    close_fds=True,
                    pass_fds=(write_fd,),
                    **({"user": _NOBODY, "group": _NOBODY, "extra_groups": []} if drop else {}),
                )
            finally:
                os.close(write_fd)
            timed_out = False
            try:
                returncode = proc.wait(timeout=config.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid)
                returncode = proc.wait()
            finally:
                # Anything the candidate left behind in its group goes too (it cannot fork, but
                # should a layer be missing, this is the backstop).
                _kill_group(proc.pid)
        duration = time.monotonic() - start
        with os.fdopen(read_fd, "rb") as status:
            raw = status.read().decode("utf-8", "replace")
        try:
            guards = json.loads(raw) if raw else []
        except json.JSONDecodeError:
            guards = []
        guards = ["process", *(["netns"] if prefix else []), *([f"uid:{_NOBODY}"] if drop else []), *guards]
        stdout, stderr = _tail(work / "stdout"), _tail(work / "stderr")
        if timed_out:
            return SandboxResult("timeout", returncode, "timeout", duration, stdout, stderr, guards)
        status_: Status = "passed" if returncode == 0 else "failed"
        reason = "" if returncode == 0 else _reason(returncode, stderr)
        return SandboxResult(status_, returncode, reason, duration, stdout, stderr, guards)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@functools.cache
def _working_mode(config_key: tuple) -> tuple[bool, bool]:
    """The strongest (drop_root, netns) combination that runs a trivial program on this machine."""
    config = SandboxConfig(*config_key)
    for drop, netns in (
        (config.drop_root, config.network_namespace),
        (False, config.network_namespace),
        (False, False),
    ):
        try:
            if _run("print('ok')\n", config, drop, netns).stdout.strip() == "ok":
                return drop, netns
        except OSError:  # e.g. uid nobody may not execute this interpreter (it lives under /root)
            continue
    return False, False


def run_program(program: str, config: SandboxConfig | None = None) -> SandboxResult:
    """Run `program` (Python source) in the sandbox; `passed` means it exited with status 0."""
    config = config or SandboxConfig()
    probe_key = (
        5.0,
        config.memory_mb,
        config.fsize_mb,
        config.nofile,
        config.kernel_guard,
        config.python_guard,
        config.network_namespace,
        config.drop_root,
    )
    drop, netns = _working_mode(probe_key)
    return _run(program, config, drop, netns)


def describe() -> dict:
    """What the sandbox does on this machine (for results and `docs/eval.md`)."""
    config = SandboxConfig()
    result = run_program("print('ok')\n", config)
    return {
        "guards": result.guards,
        "timeout_s": config.timeout_s,
        "memory_mb": config.memory_mb,
        "fsize_mb": config.fsize_mb,
    }
