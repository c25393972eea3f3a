"""Safe extraction of untrusted checkpoint zips.

A zip from a colleague, a cluster or the internet is untrusted input. :func:`safe_extract` unpacks it the way
pip's wheel installer and Python's ``tarfile`` data filter do: it refuses anything dangerous with one line that
names the zip and the entry, and it never leaves a half-written result.

Refused (:class:`~prunehess.errors.UnsafeArchiveError`):

- names that would leave the folder: a ``..`` part, an absolute path, a drive letter (``C:``) in any part, also
  when written with backslashes (backslashes are read as separators, as Windows zip tools write them);
- symbolic links and other special files (the unix file type in ``external_attr``);
- duplicate names, also after Unicode NFC normalisation and case folding (they would collide on macOS and
  Windows), and a name used both as a file and as a folder;
- more than ``max_entries`` entries (checked on the declared count before the central directory is parsed);
- decompression bombs: more than ``max_total_bytes`` unpacked, or a compression ratio above ``max_ratio`` for
  one entry (against its compressed size) or for the whole archive (against the zip's size on disk). Declared
  sizes are checked first, and the bytes actually produced are counted again while streaming in chunks.

Reported as :class:`~prunehess.errors.ArchiveError`: a missing file, a file that is not a zip, a truncated or
corrupt zip (bad CRC, bad headers), encrypted entries, unsupported compression, a zip without files.

Skipped silently: ``__MACOSX/`` folders, ``.DS_Store`` and AppleDouble ``._*`` files (macOS Finder junk).

Extraction goes into a fresh hidden folder beside ``dest`` (same filesystem), which is renamed to ``dest``, or,
when ``dest`` already exists (a rerun, or the folder that holds the zip), whose files are moved over the old
ones one by one with :func:`os.replace` (atomic per file; other files in ``dest`` are kept). On any error the
temporary folder is removed and ``dest`` is untouched. A run killed by SIGKILL may leave a hidden
``.<dest>.partial-<hex>`` folder beside ``dest``; it is never read.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import struct
import unicodedata
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from prunehess.errors import ArchiveError, OutputError, UnsafeArchiveError

__all__ = ["ZipLimits", "safe_extract"]

_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_JUNK_DIRS = {"__MACOSX"}
_JUNK_FILES = {".DS_Store"}
_OUTPUT_ERRNOS = {getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS") if hasattr(errno, n)}


@dataclass(frozen=True)
class ZipLimits:
    """Limits that stop decompression bombs.

    Attributes:
        max_total_bytes: most bytes unpacked from the whole archive.
        max_ratio: highest unpacked/packed ratio of one entry, and of the archive (unpacked total / zip size).
        max_entries: most entries (files, folders and skipped junk together).
        ratio_floor_bytes: the ratio is enforced once an entry (or the archive) has unpacked more than this,
            so that a tiny, very compressible file (an all-zero bias, an empty file) is never refused.
    """

    max_total_bytes: int = 8 * 2**30
    max_ratio: float = 250.0
    max_entries: int = 100_000
    ratio_floor_bytes: int = 2**20


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]
    is_dir: bool


def safe_extract(zip_path: Path, dest: Path, *, limits: ZipLimits = ZipLimits()) -> list[Path]:
    """Unpack ``zip_path`` into ``dest`` safely and return the paths of the files written, in archive order.

    Args:
        zip_path: the untrusted zip.
        dest: the folder to unpack into; created if missing; existing files of the same name are replaced.
        limits: the bomb limits.

    Raises:
        UnsafeArchiveError: a dangerous entry (see the module docstring); nothing is written.
        ArchiveError: not a zip, truncated, corrupt, encrypted or empty; nothing is written.
        OutputError: ``dest`` cannot be written (a file or a link is in the way).

    Example:
        >>> import tempfile, zipfile
        >>> tmp = Path(tempfile.mkdtemp())
        >>> with zipfile.ZipFile(tmp / "a.zip", "w") as zf:
        ...     zf.writestr("run/0_model_lt.pth", b"x")
        >>> [p.relative_to(tmp).as_posix() for p in safe_extract(tmp / "a.zip", tmp / "out")]
        ['out/run/0_model_lt.pth']
    """
    zip_path = Path(zip_path)
    dest = Path(dest)
    with _open_zip(zip_path, limits) as zf:
        entries = _read_entries(zip_path, zf, limits)
        dest_abs = Path(os.path.abspath(dest))
        _check_dest(dest_abs, entries)
        try:
            dest_abs.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest_abs.parent / f".{dest_abs.name}.partial-{uuid.uuid4().hex[:12]}"
            tmp.mkdir()
        except OSError as exc:
            raise OutputError(f"{dest}: cannot create the extraction folder ({exc.strerror or exc})") from None
        try:
            _unpack(zip_path, zf, entries, tmp, limits)
            _move_into_place(tmp, dest_abs, entries)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return [dest.joinpath(*e.parts) for e in entries if not e.is_dir]


# --- reading and checking the central directory -------------------------------------------------------------


def _open_zip(zip_path: Path, limits: ZipLimits) -> zipfile.ZipFile:
    """Open the zip (once, for checking and unpacking), refusing too many declared entries before parsing."""
    if not zip_path.is_file():
        raise ArchiveError(f"{zip_path}: no such file")
    try:
        with open(zip_path, "rb") as fp:
            declared = _declared_entry_count(fp)
        if declared is not None and declared > limits.max_entries:
            raise UnsafeArchiveError(
                f"{zip_path}: declares {declared} entries, more than the limit of {limits.max_entries}"
            )
        return zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{zip_path}: not a readable zip ({exc})") from None
    except (OSError, EOFError, ValueError, NotImplementedError, zipfile.LargeZipFile) as exc:
        raise ArchiveError(f"{zip_path}: not a readable zip ({type(exc).__name__}: {exc})") from None


def _read_entries(zip_path: Path, zf: zipfile.ZipFile, limits: ZipLimits) -> list[_Entry]:
    """Check every entry's name, type and declared size, and return the entries to write."""
    infos = zf.infolist()
    if not infos:
        raise ArchiveError(f"{zip_path}: the zip is empty")
    if len(infos) > limits.max_entries:
        raise UnsafeArchiveError(f"{zip_path}: {len(infos)} entries, more than the limit of {limits.max_entries}")

    entries: list[_Entry] = []
    for info in infos:
        parts = _safe_parts(zip_path, info.filename)
        is_dir = _check_type(zip_path, info)
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{zip_path}: entry {info.filename!r} is encrypted")
        if not parts:
            if is_dir:
                continue  # "./" or "/" as a folder entry: nothing to create
            raise UnsafeArchiveError(f"{zip_path}: entry {info.filename!r} has an empty name")
        if _is_junk(parts):
            continue
        entries.append(_Entry(info, parts, is_dir))
    if not any(not e.is_dir for e in entries):
        raise ArchiveError(f"{zip_path}: the zip holds no files")
    _check_duplicates(zip_path, entries)
    _check_declared(zip_path, [e for e in entries if not e.is_dir], limits)
    return entries


def _declared_entry_count(fp: BinaryIO) -> int | None:
    """The entry count the end-of-central-directory record declares (zip64 aware), or None if not found.

    Read before :mod:`zipfile` parses the whole central directory into memory.
    """
    fp.seek(0, os.SEEK_END)
    size = fp.tell()
    tail_len = min(size, 22 + 0xFFFF)
    fp.seek(size - tail_len)
    tail = fp.read(tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        return None
    if pos + 22 + struct.unpack("<H", tail[pos + 20 : pos + 22])[0] != len(tail):
        return None  # a signature inside the comment, or trailing bytes: let zipfile decide
    count = struct.unpack("<H", tail[pos + 10 : pos + 12])[0]
    if count != 0xFFFF or pos < 20 or tail[pos - 20 : pos - 16] != b"PK\x06\x07":
        return count
    offset = struct.unpack("<Q", tail[pos - 12 : pos - 4])[0]
    if offset + 56 > size:
        return None
    fp.seek(offset)
    rec = fp.read(56)
    if rec[:4] != b"PK\x06\x06":
        return None
    return struct.unpack("<Q", rec[32:40])[0]


def _safe_parts(zip_path: Path, name: str) -> tuple[str, ...]:
    """The path parts an entry name may be written to, or UnsafeArchiveError naming the entry."""
    posix = name.replace("\\", "/")
    if posix.startswith("/"):
        raise UnsafeArchiveError(f"{zip_path}: entry {name!r} is an absolute path")
    parts = tuple(p for p in posix.split("/") if p not in ("", "."))
    for part in parts:
        if part == "..":
            raise UnsafeArchiveError(f"{zip_path}: entry {name!r} has a '..' part (it would write outside the folder)")
        if _DRIVE.match(part) or (os.name == "nt" and ":" in part):
            raise UnsafeArchiveError(f"{zip_path}: entry {name!r} names a drive ({part!r})")
    return parts


def _check_type(zip_path: Path, info: zipfile.ZipInfo) -> bool:
    """True for a folder entry, False for a regular file; UnsafeArchiveError for links and special files."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise UnsafeArchiveError(f"{zip_path}: entry {info.filename!r} is a symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchiveError(f"{zip_path}: entry {info.filename!r} is a special file (mode {oct(mode)})")
    return kind == stat.S_IFDIR or info.filename.endswith(("/", "\\"))


def _is_junk(parts: tuple[str, ...]) -> bool:
    return any(p in _JUNK_DIRS for p in parts) or parts[-1] in _JUNK_FILES or parts[-1].startswith("._")


def _fold(parts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(unicodedata.normalize("NFC", p).casefold() for p in parts)


def _check_duplicates(zip_path: Path, entries: list[_Entry]) -> None:
    """Refuse repeated names (after normalisation) and a name used both as a file and as a folder."""
    files: dict[tuple[str, ...], str] = {}
    dirs: dict[tuple[str, ...], str] = {}
    for e in entries:
        key = _fold(e.parts)
        if e.is_dir:
            dirs.setdefault(key, e.info.filename)
            continue
        if key in files:
            raise UnsafeArchiveError(
                f"{zip_path}: entry {e.info.filename!r} duplicates {files[key]!r} (the same name after normalisation)"
            )
        files[key] = e.info.filename
        for i in range(1, len(key)):
            dirs.setdefault(key[:i], e.info.filename)
    for key, name in files.items():
        if key in dirs:
            raise UnsafeArchiveError(
                f"{zip_path}: entry {name!r} is used both as a file and as a folder ({dirs[key]!r})"
            )


def _check_declared(zip_path: Path, files: list[_Entry], limits: ZipLimits) -> None:
    """Refuse a bomb by the sizes the central directory declares (streaming checks them again)."""
    total = 0
    for e in files:
        info = e.info
        total += info.file_size
        if total > limits.max_total_bytes:
            raise UnsafeArchiveError(
                f"{zip_path}: entry {info.filename!r} brings the unpacked size over the limit of "
                f"{limits.max_total_bytes} bytes (possible zip bomb)"
            )
        _check_ratio(zip_path, info.filename, info.file_size, info.compress_size, limits, "entry")
    _check_ratio(zip_path, files[-1].info.filename, total, zip_path.stat().st_size, limits, "archive")


def _check_ratio(zip_path: Path, name: str, unpacked: int, packed: int, limits: ZipLimits, what: str) -> None:
    if unpacked <= limits.ratio_floor_bytes:
        return
    ratio = unpacked / max(packed, 1)
    if ratio > limits.max_ratio:
        where = f"entry {name!r}" if what == "entry" else f"the archive (at entry {name!r})"
        raise UnsafeArchiveError(
            f"{zip_path}: {where} unpacks {ratio:.0f} times its compressed size, more than the limit of "
            f"{limits.max_ratio:g} (possible zip bomb)"
        )


# --- writing --------------------------------------------------------------------------------------------------


def _unpack(zip_path: Path, zf: zipfile.ZipFile, entries: list[_Entry], tmp: Path, limits: ZipLimits) -> None:
    """Stream every entry into ``tmp``, counting the bytes really produced against the limits."""
    counter = _Counter(zip_path, zip_path.stat().st_size, limits)
    for e in entries:
        _unpack_entry(zf, e, tmp, counter)


class _Counter:
    """Counts the bytes really unpacked and refuses as soon as a limit is passed."""

    def __init__(self, zip_path: Path, zip_size: int, limits: ZipLimits) -> None:
        self.zip_path, self.zip_size, self.limits, self.total = zip_path, zip_size, limits, 0

    def add(self, info: zipfile.ZipInfo, entry_bytes: int, n: int) -> None:
        self.total += n
        if self.total > self.limits.max_total_bytes:
            raise UnsafeArchiveError(
                f"{self.zip_path}: entry {info.filename!r} unpacks past the limit of "
                f"{self.limits.max_total_bytes} bytes (possible zip bomb)"
            )
        _check_ratio(self.zip_path, info.filename, entry_bytes, info.compress_size, self.limits, "entry")
        _check_ratio(self.zip_path, info.filename, self.total, self.zip_size, self.limits, "archive")


def _unpack_entry(zf: zipfile.ZipFile, e: _Entry, tmp: Path, counter: _Counter) -> None:
    zip_path = counter.zip_path
    target = tmp.joinpath(*e.parts)
    if not _inside(target, tmp):  # defence in depth: _safe_parts already refused such names
        raise UnsafeArchiveError(f"{zip_path}: entry {e.info.filename!r} would write outside the folder")
    try:
        if e.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with zf.open(e.info) as src, open(target, "xb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                counter.add(e.info, written, len(chunk))
                dst.write(chunk)
        if written != e.info.file_size:
            raise ArchiveError(
                f"{zip_path}: entry {e.info.filename!r} unpacks to {written} bytes but declares {e.info.file_size} "
                "(corrupt zip)"
            )
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{zip_path}: entry {e.info.filename!r} is corrupt ({exc})") from None
    except (EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise ArchiveError(
            f"{zip_path}: entry {e.info.filename!r} is corrupt or truncated ({type(exc).__name__}: {exc})"
        ) from None
    except OSError as exc:
        if exc.errno in _OUTPUT_ERRNOS:
            raise OutputError(f"{tmp.parent}: cannot write {e.info.filename!r} ({exc.strerror})") from None
        raise ArchiveError(
            f"{zip_path}: entry {e.info.filename!r} cannot be unpacked ({type(exc).__name__}: {exc})"
        ) from None
    except (UnicodeError, ValueError, zipfile.LargeZipFile) as exc:
        raise ArchiveError(
            f"{zip_path}: entry {e.info.filename!r} cannot be unpacked ({type(exc).__name__}: {exc})"
        ) from None


def _inside(path: Path, base: Path) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(base)
    return os.path.commonpath([real, root]) == root and real != root


def _check_dest(dest: Path, entries: list[_Entry]) -> None:
    """Refuse to merge into ``dest`` where a link or a file of the wrong kind is in the way."""
    if os.path.lexists(dest) and not dest.is_dir():
        raise OutputError(f"{dest}: exists and is not a folder")
    if not dest.exists():
        return
    for e in entries:
        path = dest
        for i, part in enumerate(e.parts):
            path = path / part
            last = i == len(e.parts) - 1
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                break
            except OSError as exc:
                raise OutputError(f"{path}: cannot be inspected ({exc.strerror or exc})") from None
            if stat.S_ISLNK(st.st_mode) and not (last and not e.is_dir):
                raise OutputError(f"{path}: is a symbolic link; refusing to unpack {e.info.filename!r} through it")
            wants_dir = e.is_dir or not last
            if wants_dir and not stat.S_ISDIR(st.st_mode):
                raise OutputError(f"{path}: exists and is not a folder; cannot unpack {e.info.filename!r}")
            if not wants_dir and stat.S_ISDIR(st.st_mode):
                raise OutputError(f"{path}: is a folder; cannot unpack the file {e.info.filename!r} over it")


def _move_into_place(tmp: Path, dest: Path, entries: list[_Entry]) -> None:
    """Rename ``tmp`` to ``dest``, or move its files over an existing ``dest`` one by one."""
    try:
        if not os.path.lexists(dest):
            try:
                os.rename(tmp, dest)
                return
            except OSError:
                if not dest.is_dir():  # not a race with another extraction: a real failure
                    raise
        _check_dest(dest, entries)
        for e in entries:
            target = dest.joinpath(*e.parts)
            if e.is_dir:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp.joinpath(*e.parts), target)
    except OSError as exc:
        raise OutputError(f"{dest}: cannot move the unpacked files into place ({exc.strerror or exc})") from None
