"""Red team: hostile programs run in the sandbox, as a model talked into it would write them.

Each program prints ESCAPED only if its attack worked; otherwise it fails (its attack
raises, or an ``assert`` on the attack's result does). Every one must end with an error
recorded in its ``Run``, never ESCAPED, and leave this process, its files, its environment
and its network untouched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from scale.sandbox import Limits, Run, Sandbox

SECRET = "s3cr3t-api-key"
HOST_DIR = Path(__file__).resolve().parent  # the project's files: not in the sandbox


@pytest.fixture(scope="module")
def box() -> Sandbox:
    return Sandbox(Limits(wall_seconds=6.0, cpu_seconds=3), workers=2)


@pytest.fixture(scope="module")
def listener():
    """A TCP server on this host's loopback that records every connection made to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    seen: list[object] = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            seen.append(conn)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join()
    server.close()


@pytest.fixture(scope="module")
def canary(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("host") / "canary.txt"
    path.write_text("untouched")
    return path


# name -> program; {port}, {canary}, {prefix}, {host_dir} are filled in
ATTACKS: dict[str, str] = {
    # new processes and programs
    "subprocess": "import subprocess\nsubprocess.run(['id'], check=True)\nprint('ESCAPED')",
    "os.system": "import os\nassert os.system('id') == 0\nprint('ESCAPED')",
    "os.popen": "import os\nassert os.popen('echo hi').read()\nprint('ESCAPED')",
    "fork": "import os\nos.fork()\nprint('ESCAPED')",
    "fork bomb": "import os\nwhile True:\n    os.fork()",
    "execv": "import os\nos.execv('/bin/sh', ['sh', '-c', 'echo ESCAPED'])",
    "posix_spawn": "import os\nos.posix_spawn('/bin/true', ['true'], {{}})\nprint('ESCAPED')",
    "thread": "import threading\nt = threading.Thread(target=print)\nt.start()\nprint('ESCAPED')",
    "multiprocessing": (
        "import multiprocessing as mp\np = mp.Process(target=print)\np.start()\nprint('ESCAPED')"
    ),
    "ctypes fork": "import ctypes\nassert ctypes.CDLL(None).fork() >= 0\nprint('ESCAPED')",
    "raw syscall clone": (
        "import ctypes\nassert ctypes.CDLL(None).syscall(56, 17, 0, 0, 0, 0) >= 0\nprint('ESCAPED')"
    ),
    "subclasses walk to Popen": (
        "P = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen']\n"
        "P = P[0] if P else __import__('subprocess').Popen\nP(['id']).wait()\nprint('ESCAPED')"
    ),
    "__import__ os": "__import__('os').execvp('sh', ['sh'])",
    # SymPy's string evaluation: code runs, but still inside the sandbox
    "sympify": (
        "from sympy import sympify\n"
        "assert sympify(\"__import__('os').system('touch /x')\") == 0\nprint('ESCAPED')"
    ),
    "parse_expr": (
        "from sympy.parsing.sympy_parser import parse_expr\n"
        "assert parse_expr(\"__import__('os').system('id')\") == 0\nprint('ESCAPED')"
    ),
    "lambdify": (
        "from sympy import lambdify, symbols\nx = symbols('x')\n"
        "f = lambdify(x, \"__import__('subprocess').check_output(['id'])\")\nf(1)\n"
        "print('ESCAPED')"
    ),
    "subs with a string": (
        "from sympy import symbols\nx = symbols('x')\n"
        "assert (x + 1).subs(x, \"__import__('os').system('id')\") == 1\nprint('ESCAPED')"
    ),
    # network
    "connect to the host": (
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "print('ESCAPED')"
    ),
    "urlopen": (
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=2)\n"
        "print('ESCAPED')"
    ),
    "unix socket": "import socket\nsocket.socket(socket.AF_UNIX)\nprint('ESCAPED')",
    "dns": "import socket\nsocket.getaddrinfo('pypi.org', 443)\nprint('ESCAPED')",
    # files and secrets
    "read a host file": "print(open('{canary}').read())\nprint('ESCAPED')",
    "overwrite a host file": "open('{canary}', 'w').write('owned')\nprint('ESCAPED')",
    "read the project": "import os\nprint(os.listdir('{host_dir}'))\nprint('ESCAPED')",
    "write into the Python prefix": "open('{prefix}/pwned.py', 'w').write('x')\nprint('ESCAPED')",
    "/etc/passwd": "print(open('/etc/passwd').read())\nprint('ESCAPED')",
    "/proc environ": "print(open('/proc/1/environ').read())\nprint('ESCAPED')",
    "the home folder's files": (
        "import os\nprint(os.listdir(os.path.expanduser('{home}/.cache')))\nprint('ESCAPED')"
    ),
    "environment secret": (
        "import os\nassert os.environ['SCALE_REDTEAM_SECRET']\nprint('ESCAPED')"
    ),
    "/dev/mem": "open('/dev/mem', 'rb').read(1)\nprint('ESCAPED')",
    # kernel interfaces
    "ptrace": "import ctypes\nassert ctypes.CDLL(None).ptrace(16, 1, 0, 0) == 0\nprint('ESCAPED')",
    "unshare": "import ctypes\nassert ctypes.CDLL(None).unshare(0x10000000) == 0\nprint('ESCAPED')",
    "mount": (
        "import ctypes\nassert ctypes.CDLL(None).mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0\n"
        "print('ESCAPED')"
    ),
    "raise the CPU limit": (
        "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (10**6, 10**6))\nprint('ESCAPED')"
    ),
    "signal a host process": "import os\nos.kill({victim}, 9)\nprint('ESCAPED')",
    "signal every process": "import os\nos.kill(-1, 9)\nos.kill({victim}, 9)\nprint('ESCAPED')",
    # exhaustion
    "busy loop": "while True:\n    pass",
    "ignore SIGXCPU": (
        "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass"
    ),
    "sleep": "import time\ntime.sleep(60)\nprint('ESCAPED')",
    "memory bomb": "x = bytearray(10**10)\nprint('ESCAPED')",
    "memory creep": "a = []\nwhile True:\n    a.append(' ' * 10**6)",
    "10**10**10": "print(10**10**10)",
    "recursion": "def f():\n    return f()\nf()",
    "C stack overflow": (
        "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\nf(0)"
    ),
    "100 MB answer": "print('9' * 10**8)",
    "output flood": "while True:\n    print('y' * 1000)",
    "flood the real stdout": ("import sys\nwhile True:\n    sys.__stdout__.write('z' * 65536)"),
    "flood stderr": "import sys\nwhile True:\n    sys.stderr.write('e' * 65536)",
    "fill the disk": "open('/tmp/big', 'wb').write(b'0' * (200 << 20))\nprint('ESCAPED')",
    "many files": "fs = [open(f'/tmp/f{{i}}', 'w') for i in range(100000)]\nprint('ESCAPED')",
}


@pytest.fixture(scope="module")
def victim():
    """A process of this host's that a program tries to kill."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


def fill(source: str, port: int, canary: Path, victim: int = 0) -> str:
    return source.format(
        port=port,
        canary=canary,
        prefix=sys.prefix,
        host_dir=HOST_DIR,
        home=Path.home(),
        victim=victim,
    )


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_fails_inside_the_sandbox(name, box, listener, canary, victim, monkeypatch):
    port, _ = listener
    monkeypatch.setenv("SCALE_REDTEAM_SECRET", SECRET)
    run = box.run(fill(ATTACKS[name], port, canary, victim.pid))
    assert isinstance(run, Run)
    assert run.error is not None, f"{name}: ran to the end, printed {run.stdout[-200:]!r}"
    assert "ESCAPED" not in run.stdout
    assert SECRET not in run.stdout + run.stderr
    assert len(run.stdout) + len(run.stderr) <= 2 * Limits().output_bytes


def test_nothing_outside_changed(box, listener, canary, victim):
    port, seen = listener
    runs = box.map([fill(ATTACKS[n], port, canary, victim.pid) for n in ATTACKS if "host" in n])
    assert len(runs) >= 4 and all(r.error for r in runs)
    assert victim.poll() is None  # the host process a program tried to kill still runs
    assert canary.read_text() == "untouched"
    assert not (Path(sys.prefix) / "pwned.py").exists()
    assert seen == []  # no connection ever reached this host's loopback
    assert not Path("/x").exists()


def test_errors_name_their_bound(box):
    by_name = {
        n: box.run(ATTACKS[n]).error
        for n in ("busy loop", "memory bomb", "100 MB answer", "sleep", "recursion")
    }
    assert by_name["busy loop"] in ("cpu", "timeout")
    assert by_name["memory bomb"] == "memory"
    assert by_name["100 MB answer"] == "output"
    assert by_name["sleep"] == "timeout"
    assert by_name["recursion"].startswith("exception: RecursionError")


def test_a_long_program_is_refused_unrun(box):
    run = box.run("print(1)\n" + "#" * (Limits().source_chars + 1))
    assert run.error == "refused: the program is too long"


def test_the_sandbox_still_answers_after_the_attacks(box):
    run = box.run("from sympy import sqrt\nprint(sqrt(8))")
    assert run.ok and run.answer == "2*sqrt(2)" and run.latex == "2 \\sqrt{2}"
    assert os.getpid() > 0  # this process is alive and well


def test_an_interpreter_under_tmp_still_runs(monkeypatch):
    """The private /tmp is mounted before the interpreter's folders are bound, so a venv
    under /tmp (a CI clone there) is not hidden by it."""
    venv = Path("/tmp") / f"scale-venv-{os.getpid()}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    try:
        monkeypatch.setattr(sys, "executable", str(venv / "bin" / "python"))
        monkeypatch.setattr(sys, "prefix", str(venv))
        monkeypatch.setattr(sys, "exec_prefix", str(venv))
        run = Sandbox(Limits(wall_seconds=6.0, cpu_seconds=3), workers=1).run("print(6 * 7)")
        assert run.ok and run.stdout.strip() == "42", run
    finally:
        shutil.rmtree(venv)
