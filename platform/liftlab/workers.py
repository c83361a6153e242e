"""A local Redis and Celery workers for the ``celery`` executor, on one machine.

``make workers`` (``python -m liftlab.workers``) starts a Redis of its own (``redis-server`` from
the OS packages, in a temporary folder, on a free port unless ``--port``) and two
``dagster-celery`` workers, prints the variables that send a run's steps to them, and stops
everything on Ctrl-C. The tests start the same processes with the same code
(``tests/scale/test_celery.py``).

Each worker runs one step at a time in its own process (Celery's ``solo`` pool): scale by starting
more workers, here or on other machines pointed at the same broker, database and Dagster storage.
With the solo pool the worker's pid is the process that runs the step, so "the worker died"
and "its step died" are the same event (``deploy/celery.yaml`` says what happens then).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from liftlab.defs.execution import celery_config_path

REDIS_SERVER = "redis-server"


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGKILL when the process that started it dies (Linux's
    ``PR_SET_PDEATHSIG``), so a killed test run or ``make workers`` leaves no Redis or worker
    behind. A worker's own Celery process, one level further down, exits when its broker is gone."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the caller's cleanup is all there is
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    """A ``redis-server`` process of our own: nothing persisted, data in ``directory``."""

    directory: Path
    port: int
    process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 20.0) -> RedisServer:
        executable = shutil.which(REDIS_SERVER) or "/usr/bin/redis-server"
        if not Path(executable).exists():
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )
        import redis

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self._log_tail()}")
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=1).ping():
                    return self
            except redis.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout:.0f} s")
            time.sleep(0.1)

    def _log_tail(self) -> str:
        log = self.directory / "redis.log"
        return log.read_text()[-2000:] if log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Worker:
    """One ``dagster-celery worker start`` and the Celery worker process it runs."""

    name: str
    process: subprocess.Popen
    log: Path
    _pid: int | None = field(default=None, repr=False)

    @property
    def hostname(self) -> str:
        return f"{self.name}@{socket.gethostname()}"

    @property
    def pid(self) -> int:
        """The Celery worker's own process (the child of the ``dagster-celery`` launcher), which
        with the solo pool is also the process that runs the step."""
        if self._pid is None:
            import psutil

            deadline = time.monotonic() + 30
            while self._pid is None:
                children = [p for p in psutil.Process(self.process.pid).children() if "celery" in " ".join(p.cmdline())]
                if children:
                    self._pid = children[0].pid
                elif time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"worker {self.name} has no celery process: {self.log_tail()}")
                else:
                    time.sleep(0.1)
        return self._pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def alive(self) -> bool:
        import psutil

        return psutil.pid_exists(self.pid) and psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (Celery's warm shutdown) to the Celery process and its launcher, then SIGKILL."""
        import psutil

        procs = []
        for pid in {self.process.pid, *([self._pid] if self._pid else [])}:
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        try:
            procs.extend(psutil.Process(self.process.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        if self.process.poll() is None:
            self.process.wait(5)


def start_worker(name: str, env: dict[str, str], log_dir: Path, config: Path | None = None,
                 loglevel: str = "INFO") -> Worker:
    """``dagster-celery worker start`` with liftlab's settings (``config``: the executor's YAML);
    ``env`` must carry the broker and backend, ``DAGSTER_HOME`` and the database."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    executable = Path(sys.executable).with_name("dagster-celery")
    if config is None:  # the file the worker's environment names, as the code location reads it
        config = Path(env["LIFTLAB_CELERY_CONFIG"]) if env.get("LIFTLAB_CELERY_CONFIG") else celery_config_path()
    command = [str(executable) if executable.exists() else "dagster-celery", "worker", "start",
               "-A", "dagster_celery.app", "-y", str(config), "-n", name, "-l", loglevel,
               # liftlab and its code location loaded once at start, not by the first step of each job
               "-i", "liftlab.preload",
               "--", "--pool=solo", "--without-gossip", "--without-mingle"]
    # the launcher runs `celery` from PATH: this interpreter's
    env = {**env, "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])}
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=die_with_parent)
    return Worker(name, process, log)


def wait_until_ready(workers: list[Worker], broker: str, timeout: float = 90.0) -> None:
    """Until every worker answers a ping through the broker (it is consuming the queue)."""
    import kombu.exceptions
    import redis.exceptions
    from celery import Celery

    app = Celery("liftlab-ping", broker=broker)
    pending = {w.hostname for w in workers}
    deadline = time.monotonic() + timeout
    try:
        while pending:
            for worker in workers:
                if worker.process.poll() is not None:
                    raise RuntimeError(f"worker {worker.name} exited with {worker.process.returncode}:\n{worker.log_tail()}")
            try:
                replies = app.control.ping(destination=sorted(pending), timeout=1.0) or []
            except (redis.exceptions.ConnectionError, kombu.exceptions.OperationalError):
                replies = []  # the broker is (re)starting: ask again, on new connections, until the deadline
                app.close()
                app = Celery("liftlab-ping", broker=broker)
                time.sleep(0.5)
            for reply in replies:
                pending -= set(reply)
            if pending and time.monotonic() > deadline:
                tails = "\n".join(f"--- {w.name}\n{w.log_tail()}" for w in workers if w.hostname in pending)
                raise RuntimeError(f"workers not ready after {timeout:.0f} s: {sorted(pending)}\n{tails}")
    finally:
        app.close()


def worker_of(record) -> str | None:
    """The Celery worker an event-log record names: dagster-celery's "Executing steps … in celery
    worker" engine event carries it in its ``Celery worker`` field (the Dagster UI shows it)."""
    event = record.dagster_event
    if event is None or event.event_type_value != "ENGINE_EVENT" or not event.engine_event_data:
        return None
    value = (event.engine_event_data.metadata or {}).get("Celery worker")
    return None if value is None else str(getattr(value, "value", value))


def step_workers(instance, run_id: str) -> dict[str, list[str]]:
    """Step key → the workers that started it, in order, from the run's event log."""
    from dagster import DagsterEventType

    workers: dict[str, list[str]] = {}
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        worker = worker_of(record)
        if worker is not None:
            workers.setdefault(record.step_key, []).append(worker)
    return workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=None, help="Redis port (default: a free one)")
    args = parser.parse_args(argv)

    if not os.environ.get("DAGSTER_HOME"):
        parser.error("DAGSTER_HOME is not set: run through `make workers` (it sets liftlab's environment)")
    directory = Path(tempfile.mkdtemp(prefix="liftlab-workers-"))
    redis_server = RedisServer(directory / "redis", args.port or free_port()).start()
    env = {**os.environ, "LIFTLAB_EXECUTOR": "celery",
           "LIFTLAB_CELERY_BROKER": redis_server.url(0), "LIFTLAB_CELERY_BACKEND": redis_server.url(1)}
    if env.get("LIFTLAB_DATABASE_URL") and not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = env["LIFTLAB_DATABASE_URL"]
    workers: list[Worker] = []
    try:
        workers = [start_worker(f"worker{i + 1}", env, directory) for i in range(args.workers)]
        wait_until_ready(workers, env["LIFTLAB_CELERY_BROKER"])
        print(f"Redis at {redis_server.url()} and {len(workers)} workers ({', '.join(w.hostname for w in workers)}), "
              f"logs in {directory}.\nSend runs to them from another shell:\n\n"
              f"  export LIFTLAB_EXECUTOR=celery LIFTLAB_CELERY_BROKER={env['LIFTLAB_CELERY_BROKER']} "
              f"LIFTLAB_CELERY_BACKEND={env['LIFTLAB_CELERY_BACKEND']}\n  make dev   # then launch any job\n\n"
              "Ctrl-C stops the workers and Redis.", flush=True)
        while all(w.process.poll() is None for w in workers) and redis_server.process.poll() is None:
            time.sleep(1)
        print("a worker or Redis exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for worker in workers:
            worker.stop()
        redis_server.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
