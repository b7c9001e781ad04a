"""The HumanEval sandbox stops hostile candidates, scores them as failures, and the evaluator lives on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from codecomplete.eval.sandbox import SandboxConfig, run_program

FAST = SandboxConfig(timeout_s=3.0)


def _guards() -> list[str]:
    return run_program("pass\n", FAST).guards


def test_a_correct_candidate_passes_and_an_assertion_fails():
    ok = run_program("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nprint('fine')\n", FAST)
    assert ok.passed, ok.stderr
    assert ok.stdout.strip() == "fine"
    bad = run_program("def add(a, b):\n    return a - b\n\nassert add(2, 3) == 5\n", FAST)
    assert bad.status == "failed" and "AssertionError" in bad.reason


def test_infinite_loop_is_killed_at_the_wall_clock_timeout():
    start = time.monotonic()
    res = run_program("while True:\n    pass\n", SandboxConfig(timeout_s=1.5))
    assert res.status == "timeout" and not res.passed
    assert time.monotonic() - start < 10


def test_sleeping_forever_is_killed_too():
    # No CPU used, so only the wall clock can stop it.
    res = run_program("import time\ntime.sleep(3600)\n", SandboxConfig(timeout_s=1.0))
    assert res.status == "timeout"


def test_allocating_10_gb_fails_without_hurting_the_evaluator():
    res = run_program("blob = bytearray(10 * 1024 ** 3)\nprint(len(blob))\n", FAST)
    assert res.status == "failed" and "MemoryError" in res.reason
    assert res.stdout == ""


@pytest.mark.parametrize(
    "program",
    [
        "import os\nwhile True:\n    os.fork()\n",
        "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)\n",
        "import subprocess\nsubprocess.run(['true'], check=True)\n",
        "import os\nos.system('true')\n",
        "import multiprocessing as mp\np = mp.Process(target=print)\np.start()\np.join()\nassert p.exitcode == 0\n",
    ],
    ids=["fork-bomb", "os.fork", "subprocess", "os.system", "multiprocessing"],
)
def test_new_processes_are_refused(program):
    before = _children()
    res = run_program(program, FAST)
    assert res.status == "failed", (res.status, res.reason, res.stderr)
    assert _children() == before  # nothing left running behind the evaluator's back


def test_writing_outside_the_scratch_directory_fails(tmp_path):
    target = tmp_path / "escaped.txt"
    res = run_program(f"open({str(target)!r}, 'w').write('owned')\n", FAST)
    assert res.status == "failed" and "PermissionError" in res.reason
    assert not target.exists()
    # ... as does removing something outside it.
    keep = tmp_path / "keep.txt"
    keep.write_text("x")
    res = run_program(f"import os\nos.remove({str(keep)!r})\n", FAST)
    assert res.status == "failed" and keep.exists()


def test_the_scratch_directory_is_writable_and_removed_afterwards():
    res = run_program(
        "import os\nopen('notes.txt', 'w').write('hello')\nassert open('notes.txt').read() == 'hello'\n"
        "print(os.getcwd())\n",
        FAST,
    )
    assert res.passed, res.stderr
    assert not os.path.exists(res.stdout.strip())


def test_opening_a_socket_fails():
    with socket.socket() as server:  # a listener the candidate would love to reach
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        server.settimeout(0.5)
        res = run_program(
            f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'hi')\n",
            FAST,
        )
        assert res.status == "failed"
        with pytest.raises(TimeoutError):
            server.accept()


def test_huge_output_is_capped_by_the_file_size_limit():
    res = run_program(
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
        SandboxConfig(timeout_s=5.0, fsize_mb=1),
    )
    assert res.status in ("failed", "timeout")
    assert len(res.stdout) <= 4000  # the evaluator reads only the tail


@pytest.mark.parametrize(
    "program, needs",
    [
        ("import os\nos.fork()\n", "seccomp"),
        ("import socket\nsocket.socket().connect(('127.0.0.1', 9))\n", "seccomp"),
        ("open('/tmp/codecomplete-sandbox-escape-probe', 'w').write('x')\n", "landlock"),
    ],
    ids=["fork", "socket", "write"],
)
def test_kernel_layers_hold_without_the_python_guard(program, needs):
    """The audit hook is only a convenience: with it off, the kernel still says no."""
    if not any(g.startswith(needs) for g in _guards()):
        pytest.skip(f"{needs} is not available on this machine")
    res = run_program(program, SandboxConfig(timeout_s=3.0, python_guard=False))
    assert res.status == "failed" and (
        "PermissionError" in res.reason or "Operation not permitted" in res.reason
    ), res.reason
    assert not os.path.exists("/tmp/codecomplete-sandbox-escape-probe")


def test_signalling_the_evaluator_fails_and_it_survives():
    res = run_program("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", FAST)
    assert res.status == "failed"


def test_signals_to_outside_processes_are_refused_by_the_kernel():
    if not any(g.startswith("landlock") and "+scoped" in g for g in _guards()):
        pytest.skip("Landlock signal scoping (ABI >= 6) is not available on this machine")
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        program = f"import os, signal\nos.kill({victim.pid}, signal.SIGKILL)\n"
        res = run_program(program, SandboxConfig(timeout_s=3.0, python_guard=False))
        assert res.status == "failed" and "PermissionError" in res.reason, res.reason
        assert victim.poll() is None  # still alive
    finally:
        victim.kill()
        victim.wait()


def test_guards_are_reported():
    guards = _guards()
    assert "process" in guards and "rlimits" in guards and "audit-hook" in guards


def _children() -> set[int]:
    """Sandboxed processes still alive anywhere on the machine (an escaped fork would be one)."""
    alive = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"_sandbox_child.py" in f.read():
                        alive.add(int(pid))
            except OSError:
                continue
    return alive


def test_the_evaluator_is_unharmed():
    # After everything above, this process still runs Python and can start a sandbox.
    assert sys.version_info >= (3, 10)
    assert run_program("print(6 * 7)\n", FAST).stdout.strip() == "42"
