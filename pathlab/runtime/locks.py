"""One run per run dir: a dir that holds a finished or running run is not reused by accident,
and two processes never write one run dir at once.

- A run dir holds a run when it has `metrics.json` or checkpoints. A new run there is refused
  unless it continues that run (`ckpt_path=last`/`auto`, or a checkpoint of that dir) or the user
  asks to replace it (`overwrite=true`, which clears the dir first).
- The lock is `<run dir>/.pathlab.lock`, held with flock(2) for as long as the run lives. The
  kernel drops it when the process dies, however it dies, so the lock of a dead run is taken over
  without anyone deleting files; the file's JSON (pid, host, start, command) names the holder in
  the refusal. (A pid file alone cannot tell a dead holder from a live one on another host.)
- Only global rank 0 claims: the other DDP processes of the same run share its dir.
- `RunDirGuard`, a Hydra callback, claims the dir before Hydra writes `.hydra/` into it (so a
  refused run changes nothing there) and says a read-only or unwritable run dir in one line.
- `exclusive_lock`: one process at a time in a store that the jobs of a sweep share.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pathlab.runtime.errors import ConfigError, PathlabError, StorageError, find_pathlab_error

LOCK_NAME = ".pathlab.lock"
# what marks a run dir as holding a run (Hydra's own .hydra/ and log are written by every start)
RUN_MARKERS = ("metrics.json", "checkpoints")
# what `overwrite=true` keeps: the lock, and what Hydra wrote for this very start
KEEP_ON_OVERWRITE = (LOCK_NAME, ".hydra")

_held: dict[Path, RunLock] = {}  # run dirs this process holds (the Hydra callback, then train)


def global_rank() -> int:
    """This process's global rank from the launcher's environment (0 without one)."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def previous_run(run_dir: Path) -> str | None:
    """What run the dir holds, in words (None: none)."""
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        try:
            status = json.loads(metrics.read_text()).get("status", "completed")
        except (OSError, ValueError, AttributeError):
            status = "unreadable"
        return f"a {status} run (metrics.json)"
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    if checkpoints:
        return f"a run that stopped before writing metrics.json (checkpoints: {', '.join(checkpoints)})"
    return None


def continues(ckpt_path: str | None, run_dir: Path) -> bool:
    """Whether `ckpt_path` continues the run in `run_dir` (last, auto, or one of its checkpoints)."""
    if not ckpt_path:
        return False
    if ckpt_path in ("last", "auto"):
        return True
    try:
        return Path(ckpt_path).resolve().parent.parent == run_dir.resolve()
    except OSError:
        return False


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return "another process"
    return (
        f"pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}: "
        f"{info.get('command', '')}"
    ).strip(": ")


def _clear(run_dir: Path) -> None:
    for entry in run_dir.iterdir():
        if entry.name in KEEP_ON_OVERWRITE or entry.suffix == ".log":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


class RunLock:
    """An exclusive flock on `<run dir>/.pathlab.lock`; release() (or the process's end) frees it."""

    def __init__(self, run_dir: Path, fd: int | None, took_over: str | None = None):
        self.run_dir, self.fd, self.took_over = run_dir, fd, took_over

    @property
    def path(self) -> Path:
        return self.run_dir / LOCK_NAME

    def release(self) -> None:
        if self.fd is None:
            return
        _held.pop(self.run_dir, None)
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _lock(run_dir: Path) -> RunLock:
    path = run_dir / LOCK_NAME
    for _ in range(5):  # the holder may unlink the file between our open and our flock
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"hydra.run.dir={run_dir} is being written by another run ({_holder(path)}); "
                "two runs in one dir would mix their files. Wait for it to finish, or pick "
                "another hydra.run.dir."
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # locked a file its holder had just removed: try the new one
            os.close(fd)
            continue
        before = os.read(fd, 4096).decode(errors="replace").strip()
        took_over = _holder(path) if before else None  # a dead run's lock file
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500],
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        lock = RunLock(run_dir, fd, took_over)
        # a run that ends in SystemExit (a pathlab error line) skips Hydra's on_run_end: the
        # kernel frees the flock anyway, but the file would stay and name a finished process
        atexit.register(lock.release)
        return lock
    raise ConfigError(f"hydra.run.dir={run_dir}: could not take its lock {path}; try again.")


def claim_run_dir(
    run_dir: str | Path, ckpt_path: str | None = None, overwrite: bool = False
) -> RunLock:
    """Take `run_dir` for this run: refuse a dir that holds another run (unless `ckpt_path`
    continues it or `overwrite` clears it) or that another live process writes. Reentrant in one
    process (the Hydra callback claims first, train() again); other ranks get a no-op lock."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        return RunLock(run_dir, None)  # this process holds it already: the holder releases
    if global_rank() != 0:
        return RunLock(run_dir, None)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock(run_dir)
    except OSError as exc:
        raise find_pathlab_error(exc) or StorageError(
            f"cannot write the run dir {run_dir}: {exc.strerror or exc}. Point the run elsewhere "
            "(hydra.run.dir=...)."
        ) from None
    try:
        held = previous_run(run_dir)
        if held and not continues(ckpt_path, run_dir):
            if not overwrite:
                raise ConfigError(
                    f"hydra.run.dir={run_dir} already holds {held}; a new run there would replace "
                    "its checkpoints and metrics. Continue it with ckpt_path=last, replace it with "
                    "overwrite=true, or pick another hydra.run.dir."
                )
            _clear(run_dir)
    except BaseException:
        lock.release()
        raise
    _held[run_dir] = lock
    return lock


def check_writable(run_dir: Path) -> None:
    """A run dir that cannot be created or written, as one StorageError naming it."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".pathlab.write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StorageError(
            f"cannot write the run dir {exc.filename or run_dir}: {exc.strerror or exc}. Point the "
            "run at a writable folder (hydra.run.dir=...)."
        ) from None


try:  # the Hydra callback; pathlab's library works without Hydra's callback API
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[assignment,misc]


class RunDirGuard(Callback):
    """Hydra callback (conf/hydra/default.yaml: `callbacks: {run_dir_guard: {_target_:
    pathlab.runtime.locks.RunDirGuard}}`): claim a single run's dir before Hydra writes into it."""

    def __init__(self) -> None:
        self.lock: RunLock | None = None

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        if global_rank() != 0:
            return
        try:
            run_dir = Path(str(config.hydra.run.dir))
            check_writable(run_dir)
            if config.get("task_name") == "train":
                self.lock = claim_run_dir(
                    run_dir, config.get("ckpt_path"), bool(config.get("overwrite", False))
                )
        except PathlabError as exc:
            print(f"\npathlab: error: {exc}\n", file=sys.stderr)
            raise SystemExit(2) from None

    def on_run_end(self, config: Any, **kwargs: Any) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created) while the block runs, for the jobs of a sweep
    that share one local store (MLflow's SQLite file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
