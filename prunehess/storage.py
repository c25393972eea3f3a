"""Atomic file writes and advisory locks: the one place that writes a file into place or locks a folder.

A leaf module (standard library and :mod:`prunehess.errors` only), used by the output tree
(:mod:`prunehess.layout`), the extraction's run state, the plots and the training runs.

- **Atomic writes.** :func:`atomic_write_bytes`, :func:`atomic_write_text` and :func:`atomic_write_with` write a
  temporary file ``.<name>.<random>.tmp`` in the destination's folder, fsync it and :func:`os.replace` it into
  place: a reader, or a run killed at any moment, sees the old file or the new one, never half of one. The
  temporary is created with mode ``0o666``, so the kernel applies the process's umask, as for any new file (the
  umask is never read or changed here). On any exception the temporary is removed and the error propagates
  unchanged (an :class:`OSError` stays an :class:`OSError`). Parent folders are created.
- **Locks.** :class:`FolderLock` is an exclusive, non-blocking ``fcntl.flock`` on a lock file that holds the
  holder's pid: a second process is refused with an :class:`~prunehess.errors.OutputError`, and the OS drops the
  lock when the holder dies (even by SIGKILL). :func:`exclusive` takes a blocking exclusive lock on an existing file
  or folder, for a short critical section shared by cooperating processes (the ranks of one ``torchrun`` job).
- **Sweeping.** :func:`sweep_temporaries` deletes the temporaries a killed writer left behind; only the holder of
  the folder's lock should call it, since another live writer could own them otherwise.

On a system without ``fcntl`` (not POSIX) the locks lock nothing.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> atomic_write_text(folder / "a" / "b.txt", "one\\n")
    >>> (folder / "a" / "b.txt").read_text()
    'one\\n'
    >>> with FolderLock(folder / "lock", busy=lambda pid: f"held by pid {pid}"):
    ...     pass
"""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Optional

from prunehess.errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_with",
    "FolderLock",
    "exclusive",
    "sweep_temporaries",
    "TEMPORARY_PATTERN",
]

TEMPORARY_PATTERN = ".*.tmp"
"""The glob of the temporaries the atomic writers create (``.<name>.<random>.tmp``)."""

_NEW_FILE = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_HOLDER_BYTES = 64


# ------------------------------------------------------------------------------------------------ writes
def _new_temporary(folder: Path, name: str) -> tuple[int, Path]:
    """Create ``folder/.<name>.<random>.tmp`` exclusively (mode 0o666, less the umask); its fd and path."""
    for _ in range(100):
        path = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(path, _NEW_FILE, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: cannot create a temporary file for {name}")  # pragma: no cover


def atomic_write_with(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` atomically through ``write(handle)``, e.g. ``lambda fh: torch.save(state, fh)``.

    ``write`` receives a binary file open on a temporary in the same folder; when it returns, the temporary is
    flushed, fsynced and renamed over ``path``. If anything raises, the temporary is removed, ``path`` keeps its
    old content, and the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temporary(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; see :func:`atomic_write_with`."""
    atomic_write_with(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8, line ends as given) to ``path`` atomically; see :func:`atomic_write_with`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sweep_temporaries(folders: Iterable[str | Path]) -> list[Path]:
    """Delete the temporaries (``.<name>.<random>.tmp``) a killed writer left in ``folders`` (not their
    subfolders); returns the deleted files, sorted. Missing folders and files that vanish meanwhile are skipped."""
    removed = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for entry in folder.glob(TEMPORARY_PATTERN):
            if not entry.is_file():
                continue
            try:
                entry.unlink()
            except OSError:  # gone already, or not ours to delete: harmless, never read
                continue
            removed.append(entry)
    return sorted(removed)


# ------------------------------------------------------------------------------------------------- locks
class FolderLock:
    """An exclusive, non-blocking advisory lock (``fcntl.flock``) on the file ``path``, which holds the holder's pid.

    Args:
        path: the lock file; created if missing (its folder must exist).
        busy: ``pid_text -> message`` for the :class:`~prunehess.errors.OutputError` raised when another process
            holds the lock; ``pid_text`` is the pid the holder wrote, or ``"another process"`` when it wrote none.

    Use it as a context manager, or call :meth:`acquire` and :meth:`release` (releasing twice, or a lock never
    acquired, does nothing). The OS drops the lock when the holding process dies. Locks are per open file:
    a second :class:`FolderLock` on the same file is refused even in the same process.
    """

    def __init__(self, path: str | Path, busy: Callable[[str], str]):
        self.path = Path(path)
        self.busy = busy
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> "FolderLock":
        """Take the lock, or raise :class:`OutputError` (``busy``'s message) if another holder has it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this lock is already held")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as err:
            raise OutputError(f"{self.path}: cannot create the lock ({err.strerror or err})") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.lseek(fd, 0, os.SEEK_SET)
                holder = os.read(fd, _HOLDER_BYTES).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise OutputError(self.busy(holder)) from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the file releases it); does nothing if not held."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"FolderLock({str(self.path)!r}, held={self.held})"


@contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    """Hold a blocking exclusive ``flock`` on the existing file or folder ``path`` for the ``with`` block.

    Cooperating processes that wrap the same check-then-write in ``exclusive(folder)`` run it one at a time (e.g.
    "save the first measured strategy unless another rank saved one"). No file is created for it.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock
