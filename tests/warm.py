"""A warm Python for the command-line tests: one process per test worker imports the heavy
libraries once (torch, sentence-transformers, MLflow: about 11 of a cached tiny run's 16 s), then
forks a child per command, which runs `python -m MODULE ARGS` or `python SCRIPT ARGS` from its own
argv, environment, working directory and standard streams, and exits with the command's exit code.

What runs is the real command, nothing is stubbed. What differs from a fresh interpreter: the
preloaded libraries read their import-time environment once, so a command whose environment
changes such a variable (HF_* but HF_TOKEN, TORCH*, OMP_*, ...) runs in a fresh interpreter
instead; what the server drew at import, children share (the run-dir suffix ${run_suffix:}: a
test of two commands' own draws starts fresh interpreters); and the server harvests the default
data's docstrings once (18 s; a process caches its harvest), so a child finds that harvest done,
as a second harvest in one process would, and the pipeline modules that harvest needs imported
from this checkout (a command run in another copy of the code gets a fresh interpreter). A
child's own `subprocess.run` of such a command (a benchmark's pipeline runs, a sweep's report),
with its streams inherited or captured, is a warm child too, leading its own process group. Like
any in-process test, the server does not see code edited after it started: edit, then start the
tests. HNPIPE_TEST_FRESH=1 runs every command in a fresh interpreter.

    python tests/warm.py SOCKET     the server (started by `run` on first use)
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Imported once by the server; the child of each command finds them in sys.modules.
PRELOAD = ("torch", "numpy", "scipy.stats", "pandas", "sklearn.metrics", "datasets", "accelerate",
           "transformers", "transformers.trainer", "transformers.models.bert.modeling_bert",
           "sentence_transformers", "sentence_transformers.sentence_transformer.trainer",
           "mlflow", "mlflow.store.tracking.sqlalchemy_store", "mlflow.tracking.fluent", "alembic",
           "sqlalchemy")
CHECKOUT = Path(__file__).resolve().parents[1]
# Environment variables a preloaded library reads at import: a command that changes one of them
# gets a fresh interpreter.
IMPORT_TIME_ENV = ("HF_", "HUGGINGFACE", "TRANSFORMERS", "TOKENIZERS", "TORCH", "PYTORCH", "OMP_",
                   "MKL_", "OPENBLAS", "CUDA", "MLFLOW_DISABLE_TELEMETRY", "PYTHONPATH", "PYTHONHASHSEED",
                   "SENTENCE_TRANSFORMERS")
# ... but for these, which the libraries read when they are used (huggingface_hub's get_token).
CALL_TIME_ENV = ("HF_TOKEN",)


# ---------------------------------------------------------------- server

def _serve(path: str) -> dict | None:
    """Accepts commands until the test worker goes; returns, in each forked child, its command."""
    import importlib

    _server.update(path=path, env=dict(os.environ))  # a child's own commands come back here (the
    # environment as the test worker started it, before the libraries add their own variables)
    for name in PRELOAD:
        importlib.import_module(name)
    _harvest_default_data()
    gc.freeze()  # as a job does after its imports (pipeline.app): children's collections skip them
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    os.rename(path + ".tmp", path)  # clients connect only once every library is loaded
    listener.listen(16)
    waiting: dict[int, socket.socket] = {}
    while os.getppid() == parent:
        if select.select([listener], [], [], 0.05)[0]:
            conn, _ = listener.accept()
            message, fds = _receive(conn)
            if len(fds) != 3:  # not a command (a client that went away)
                conn.close()
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                    os.close(fd)
                return json.loads(message)
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            waiting[pid] = conn
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = waiting.pop(pid)
            with conn, contextlib.suppress(OSError):  # a client that gave up has closed its end
                conn.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
    return None


def _receive(conn: socket.socket) -> tuple[bytes, list[int]]:
    """One command: a JSON line, the three standard streams' descriptors with its first bytes."""
    message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    while message and not message.endswith(b"\n"):
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        message += chunk
    return message, fds


def _harvest_default_data() -> None:
    """The default data's docstring harvest (10 s, cached per process), done once for every child."""
    sys.path[0] = str(CHECKOUT)  # a child sets its own path[0]
    from pipeline.config.schema import DocstringsData
    from pipeline.stages import docstrings

    data = DocstringsData()
    docstrings.harvest(list(data.packages), data.min_summary_words, data.min_body_chars, data.max_body_chars)


def _become(command: dict) -> None:
    """In the forked child: take the command's process state, then run it as `python` would."""
    subprocess.run = _run_warm_where_it_can  # type: ignore[assignment]
    os.setsid()  # signal dispositions are the server's, which are a fresh python's
    os.chdir(command["cwd"])
    os.environ.clear()
    os.environ.update(command["env"])
    line = os.isatty(1)
    sys.stdout.reconfigure(line_buffering=line, write_through="PYTHONUNBUFFERED" in command["env"])
    sys.stderr.reconfigure(line_buffering=True)
    if os.isatty(0):  # the terminal becomes the command's own, as a shell's child has it
        import fcntl
        import termios

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    import runpy

    argv = command["argv"]
    if argv[0] == "-m":
        sys.argv = argv[1:]
        sys.path[0] = os.getcwd()
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path[0] = str(Path(argv[0]).resolve().parent)
        runpy.run_path(argv[0], run_name="__main__")


# ---------------------------------------------------------------- client

_server: dict = {}
_starting = threading.Lock()


def _socket_path() -> str:
    """Starts this worker's server on first use (tests run commands from threads too); its socket path."""
    with _starting:
        return _start_server()


def _start_server() -> str:
    if "path" not in _server:
        folder = tempfile.mkdtemp(prefix="warm-python-")
        path = os.path.join(folder, "socket")
        log = open(os.path.join(folder, "server.log"), "w")  # noqa: SIM115  kept open for the server's life
        proc = subprocess.Popen([sys.executable, __file__, path], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
        atexit.register(proc.kill)
        _server.update(path=path, proc=proc, log=log.name, env=dict(os.environ))
    return _server["path"]


def _connect(timeout: float) -> socket.socket:
    path, deadline = _socket_path(), time.monotonic() + timeout
    while not os.path.exists(path):
        if _server["proc"].poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the warm Python did not start: {Path(_server['log']).read_text()[-2000:]}")
        time.sleep(0.05)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    return conn


def _warm_enough(argv: list[str], cwd, env: dict[str, str]) -> bool:
    runnable = argv[0] == sys.executable and len(argv) > 1 and (argv[1] == "-m" or argv[1].endswith(".py"))
    if not runnable or os.environ.get("HNPIPE_TEST_FRESH") == "1":
        return False
    if Path(cwd).resolve() != CHECKOUT:  # another copy of the code: not the server's preloaded pipeline
        return False
    started = _server.get("env", os.environ)
    changed = {key for key in env.keys() | started.keys() if env.get(key) != started.get(key)}
    return not any(key.startswith(IMPORT_TIME_ENV) and key not in CALL_TIME_ENV for key in changed)


class Process:
    """A started command: a small subprocess.Popen (pid, poll, wait, send_signal, kill)."""

    def __init__(self, argv: list[str], cwd, env: dict[str, str], fds: list[int]):
        self.args, self.returncode = argv, None
        self._conn = _connect(timeout=300)
        command = {"argv": argv[1:], "cwd": str(cwd), "env": env}
        message = json.dumps(command).encode() + b"\n"
        sent = socket.send_fds(self._conn, [message], fds)
        self._conn.sendall(message[sent:])
        self._replies = self._conn.makefile()
        self.pid = json.loads(self._replies.readline())["pid"]

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._conn], [], [], 0)[0]:
            self.returncode = json.loads(self._replies.readline())["returncode"]
            self._conn.close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and not select.select([self._conn], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.poll()  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """Kills the command and whatever it started (it leads its own process group)."""
        if self.returncode is None:
            os.killpg(self.pid, signal.SIGKILL)


def start(argv: list[str], *, cwd, env: dict[str, str], stdin: int, stdout: int,
          stderr: int) -> Process | subprocess.Popen:
    """subprocess.Popen(argv, ...) for `[sys.executable, -m MODULE | SCRIPT, ...]` with its streams
    on these file descriptors: a warm child where the environment allows (see the module
    docstring), else a fresh process."""
    if _warm_enough(argv, cwd, env):
        return Process(argv, cwd, env, [stdin, stdout, stderr])
    return subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
                            start_new_session=True)


def _waited(proc: Process | subprocess.Popen, timeout: float | None) -> int:
    """The command's exit code; past `timeout` it is killed, with what it started, and
    subprocess.TimeoutExpired raised, as subprocess.run does."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def run(argv: list[str], *, cwd, env: dict[str, str] | None = None, timeout: float | None = None,
        text: bool = True) -> subprocess.CompletedProcess:
    """subprocess.run(argv, capture_output=True, ...) through `start`."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, open(os.devnull) as null:
        proc = start(argv, cwd=cwd, env=dict(os.environ if env is None else env), stdin=null.fileno(),
                     stdout=out.fileno(), stderr=err.fileno())
        returncode = _waited(proc, timeout)
        out.seek(0)
        err.seek(0)
        captured = [out.read(), err.read()]
    if text:
        return subprocess.CompletedProcess(argv, returncode, *(b.decode(errors="replace") for b in captured))
    return subprocess.CompletedProcess(argv, returncode, *captured)


_fresh_run = subprocess.run


def _run_warm_where_it_can(args, *popenargs, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run in a child: `run` where the streams are inherited or captured and the
    command can be warm, else subprocess.run itself."""
    cwd, env = kwargs.get("cwd") or os.getcwd(), dict(kwargs.get("env") or os.environ)
    if (popenargs or set(kwargs) - {"cwd", "env", "capture_output", "text", "timeout", "check"}
            or not isinstance(args, list) or not _warm_enough([str(a) for a in args], cwd, env)):
        return _fresh_run(args, *popenargs, **kwargs)
    args = [str(a) for a in args]
    if kwargs.get("capture_output"):
        done = run(args, cwd=cwd, env=env, timeout=kwargs.get("timeout"), text=bool(kwargs.get("text")))
    else:
        done = subprocess.CompletedProcess(args, _waited(Process(args, cwd, env, [0, 1, 2]), kwargs.get("timeout")))
    if kwargs.get("check"):
        done.check_returncode()
    return done


def _exit_as_python_would(run) -> None:
    """Run the command, then end as `python` ends: an uncaught exception printed, non-daemon
    threads joined, atexit handlers run, streams flushed, the same exit status; then os._exit,
    which skips only the teardown of the server's heap (every preloaded module and object
    freed one by one: 4 s per command here)."""
    status = 0
    try:
        run()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            status = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            status = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        status = -signal.SIGINT if isinstance(sys.exc_info()[1], KeyboardInterrupt) else 1
    threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter does first at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if status == -signal.SIGINT:  # as python does: killed by the signal it did not handle
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status & 0xFF)


if __name__ == "__main__":
    _command = _serve(sys.argv[1])
    if _command is not None:
        _exit_as_python_would(lambda: _become(_command))
