"""safe_extract: good zips unpack, hostile and broken ones are refused in one line with nothing written."""
from __future__ import annotations

import os
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from prunehess.checkpoints import zips
from prunehess.checkpoints.zips import ZipLimits, safe_extract
from prunehess.errors import ArchiveError, OutputError, UnsafeArchiveError

SYMLINK = stat.S_IFLNK | 0o777
FIFO = stat.S_IFIFO | 0o644
ZEROS = b"\0" * (4 << 20)  # deflates about 1000:1


def refused(exc_type, zip_path: Path, dest: Path, **kw) -> str:
    """Run safe_extract expecting ``exc_type``; check the message is one line naming the zip; return it."""
    with pytest.raises(exc_type) as info:
        safe_extract(zip_path, dest, **kw)
    message = str(info.value)
    assert "\n" not in message
    assert str(zip_path) in message or str(dest) in message
    return message


def only(tmp_path: Path, *names: str) -> None:
    """Nothing but ``names`` exists directly in ``tmp_path`` (no dest, no leftover temporary folder)."""
    assert sorted(os.listdir(tmp_path)) == sorted(names)


def patch_headers(path: Path, *, local: dict[int, tuple[str, int]], central: dict[int, tuple[str, int]]) -> None:
    """Overwrite fields of the (single) local header and central directory record: offset -> (format, value)."""
    data = bytearray(path.read_bytes())
    for sig, fields in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        at = data.index(sig)
        for offset, (fmt, value) in fields.items():
            struct.pack_into(fmt, data, at + offset, value)
    path.write_bytes(bytes(data))


# --- good zips --------------------------------------------------------------------------------------------------


def test_unpacks_nested_files_in_archive_order(make_zip, tmp_path, listing):
    z = make_zip([("run/", b""), ("run/1_model_lt.pth", b"one"), ("run/sub/0_model_lt.pth", b"zero"), ("top.txt", b"")])
    out = safe_extract(z, tmp_path / "out")
    assert out == [tmp_path / "out" / name for name in ("run/1_model_lt.pth", "run/sub/0_model_lt.pth", "top.txt")]
    assert (tmp_path / "out/run/sub/0_model_lt.pth").read_bytes() == b"zero"
    assert listing(tmp_path / "out") == ["run", "run/1_model_lt.pth", "run/sub", "run/sub/0_model_lt.pth", "top.txt"]
    only(tmp_path, "in.zip", "out")


def test_skips_macos_junk(make_zip, tmp_path, listing):
    z = make_zip([("a.pth", b"a"), ("__MACOSX/._a.pth", b"x"), (".DS_Store", b"x"), ("d/._b.pth", b"x")])
    assert safe_extract(z, tmp_path / "out") == [tmp_path / "out/a.pth"]
    assert listing(tmp_path / "out") == ["a.pth"]


def test_backslashes_are_separators(make_zip, tmp_path):
    z = make_zip([("run\\0_model_lt.pth", b"x")])
    assert safe_extract(z, tmp_path / "out") == [tmp_path / "out/run/0_model_lt.pth"]


def test_rerun_replaces_files_and_keeps_others(make_zip, tmp_path, listing):
    dest = tmp_path / "out"
    safe_extract(make_zip([("a.pth", b"old"), ("d/b.pth", b"old")]), dest)
    (dest / "mine.txt").write_text("keep me")
    again = safe_extract(make_zip([("a.pth", b"new"), ("d/b.pth", b"new")], name="second.zip"), dest)
    assert again == [dest / "a.pth", dest / "d/b.pth"]
    assert (dest / "a.pth").read_bytes() == b"new" and (dest / "d/b.pth").read_bytes() == b"new"
    assert (dest / "mine.txt").read_text() == "keep me"
    assert listing(dest) == ["a.pth", "d", "d/b.pth", "mine.txt"]
    only(tmp_path, "in.zip", "second.zip", "out")


def test_unpacks_into_the_folder_that_holds_the_zip(make_zip, tmp_path):
    z = make_zip([("0_model_lt.pth", b"x")])
    for _ in range(2):  # idempotent
        assert safe_extract(z, tmp_path) == [tmp_path / "0_model_lt.pth"]
    only(tmp_path, "in.zip", "0_model_lt.pth")


def test_small_very_compressible_files_are_not_bombs(make_zip, tmp_path):
    z = make_zip([(f"zero{i}.pth", b"\0" * 100_000) for i in range(3)])
    assert len(safe_extract(z, tmp_path / "out")) == 3


# --- hostile names ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, why",
    [
        ("../evil.pth", "'..'"),
        ("a/../../evil.pth", "'..'"),
        ("a/./../evil.pth", "'..'"),
        ("..\\evil.pth", "'..'"),
        ("a\\..\\..\\evil.pth", "'..'"),
        ("/tmp/evil.pth", "absolute"),
        ("//server/share/evil.pth", "absolute"),
        ("\\evil.pth", "absolute"),
        ("C:/evil.pth", "drive"),
        ("C:evil.pth", "drive"),
        ("c:\\windows\\evil.pth", "drive"),
        ("a/D:/evil.pth", "drive"),
    ],
)
def test_refuses_names_escaping_the_folder(make_zip, tmp_path, name, why):
    z = make_zip([("fine.pth", b"x"), (name, b"evil")])
    message = refused(UnsafeArchiveError, z, tmp_path / "out")
    assert repr(name) in message and why in message
    only(tmp_path, "in.zip")
    assert not (tmp_path.parent / "evil.pth").exists()


def test_refuses_symlink_entries(make_zip, tmp_path):
    z = make_zip([("fine.pth", b"x"), ("link.pth", b"/etc/passwd", SYMLINK)])
    assert "symbolic link" in refused(UnsafeArchiveError, z, tmp_path / "out")
    only(tmp_path, "in.zip")


def test_refuses_special_files(make_zip, tmp_path):
    z = make_zip([("fifo", b"", FIFO)])
    assert "special file" in refused(UnsafeArchiveError, z, tmp_path / "out")


def test_regular_unix_modes_are_fine_and_not_applied(make_zip, tmp_path):
    z = make_zip([("run.sh", b"x", stat.S_IFREG | 0o4777)])
    (path,) = safe_extract(z, tmp_path / "out")
    assert not path.stat().st_mode & (stat.S_ISUID | stat.S_IXOTH)


@pytest.mark.parametrize(
    "first, second",
    [
        ("a.pth", "a.pth"),
        ("a/b.pth", "a//b.pth"),
        ("./a.pth", "a.pth"),
        ("a\\b.pth", "a/b.pth"),
        ("caf\u00e9.pth", "cafe\u0301.pth"),  # NFC and NFD spellings
        ("Model.pth", "model.pth"),  # collide on case-insensitive filesystems
    ],
)
def test_refuses_duplicate_names(make_zip, tmp_path, first, second):
    z = make_zip([(first, b"1"), (second, b"2")])
    message = refused(UnsafeArchiveError, z, tmp_path / "out")
    assert "duplicates" in message and repr(second) in message
    only(tmp_path, "in.zip")


@pytest.mark.parametrize(
    "entries", [[("a", b"1"), ("a/b", b"2")], [("a/b", b"2"), ("a", b"1")], [("a/", b""), ("a", b"1")]]
)
def test_refuses_a_name_used_as_file_and_folder(make_zip, tmp_path, entries):
    z = make_zip(entries)
    assert "both as a file and as a folder" in refused(UnsafeArchiveError, z, tmp_path / "out")


def test_refuses_too_many_entries(make_zip, tmp_path):
    z = make_zip([(f"{i}.pth", b"x") for i in range(5)])
    message = refused(UnsafeArchiveError, z, tmp_path / "out", limits=ZipLimits(max_entries=3))
    assert "more than the limit of 3" in message
    assert len(safe_extract(z, tmp_path / "out", limits=ZipLimits(max_entries=5))) == 5


def test_too_many_entries_is_caught_before_the_central_directory_is_parsed(make_zip, tmp_path, monkeypatch):
    z = make_zip([(f"{i}.pth", b"x") for i in range(5)])
    monkeypatch.setattr(zips.zipfile, "ZipFile", None)  # would fail if it were reached
    assert "declares 5 entries" in refused(UnsafeArchiveError, z, tmp_path / "out", limits=ZipLimits(max_entries=3))


# --- bombs ------------------------------------------------------------------------------------------------------


def test_refuses_a_bomb_by_ratio(make_zip, tmp_path):
    z = make_zip([("fine.pth", b"x"), ("bomb.pth", ZEROS)])
    message = refused(UnsafeArchiveError, z, tmp_path / "out")
    assert "'bomb.pth'" in message and "zip bomb" in message and "limit of 250" in message
    only(tmp_path, "in.zip")


def test_refuses_a_bomb_by_total_size(make_zip, tmp_path):
    z = make_zip([("a.pth", os.urandom(600)), ("b.pth", os.urandom(600))], compression=zipfile.ZIP_STORED)
    message = refused(UnsafeArchiveError, z, tmp_path / "out", limits=ZipLimits(max_total_bytes=1000))
    assert "'b.pth'" in message and "1000 bytes" in message
    only(tmp_path, "in.zip")


def test_refuses_a_bomb_spread_over_many_small_entries(make_zip, tmp_path):
    z = make_zip([(f"{i}.pth", b"\0" * 200_000) for i in range(40)])  # each under the floor, 8 MB in all
    assert "the archive" in refused(UnsafeArchiveError, z, tmp_path / "out")


@pytest.mark.parametrize(
    "limits, data, words",
    [
        (ZipLimits(max_total_bytes=3 << 20), os.urandom(4 << 20), "past the limit"),
        (ZipLimits(), ZEROS, "times its compressed size"),
    ],
    ids=["total", "ratio"],
)
def test_streaming_counts_real_bytes_not_declared_sizes(make_zip, tmp_path, monkeypatch, limits, data, words):
    z = make_zip([("bomb.pth", data)])
    monkeypatch.setattr(zips, "_check_declared", lambda *a, **k: None)  # as if the declared sizes had lied
    assert words in refused(UnsafeArchiveError, z, tmp_path / "out", limits=limits)
    only(tmp_path, "in.zip")


def test_declared_sizes_are_checked_before_anything_is_written(make_zip, tmp_path):
    z = make_zip([("small.pth", b"x" * 100)])
    patch_headers(z, local={22: ("<I", 2**31)}, central={24: ("<I", 2**31)})  # claims 2 GiB
    assert "over the limit" in refused(UnsafeArchiveError, z, tmp_path / "out", limits=ZipLimits(max_total_bytes=2**30))
    only(tmp_path, "in.zip")


@pytest.mark.parametrize(
    "data, declared, words",
    [(b"\1" * (4 << 20), 1000, "CRC"), (os.urandom(1 << 20), 2 << 20, "declares 2097152")],
    ids=["smaller", "larger"],
)
def test_lying_uncompressed_size_is_an_error(make_zip, tmp_path, data, declared, words):
    z = make_zip([("fine.pth", b"x"), ("lie.pth", data)])
    data = bytearray(z.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # the second entry's two headers
        at = data.index(sig, data.index(sig) + 1)
        struct.pack_into("<I", data, at + offset, declared)
    z.write_bytes(bytes(data))
    message = refused(ArchiveError, z, tmp_path / "out")
    assert "'lie.pth'" in message and words in message
    only(tmp_path, "in.zip")


# --- broken zips ------------------------------------------------------------------------------------------------


def test_truncated_zip(make_zip, tmp_path):
    z = make_zip([("a.pth", os.urandom(5000))])
    z.write_bytes(z.read_bytes()[:3000])
    assert "not a readable zip" in refused(ArchiveError, z, tmp_path / "out")
    only(tmp_path, "in.zip")


def test_corrupt_data_bad_crc(make_zip, tmp_path):
    z = make_zip([("a.pth", b"hello world" * 100)], compression=zipfile.ZIP_STORED)
    data = bytearray(z.read_bytes())
    data[data.index(b"hello") + 3] ^= 0xFF
    z.write_bytes(bytes(data))
    message = refused(ArchiveError, z, tmp_path / "out")
    assert "CRC" in message and "'a.pth'" in message
    only(tmp_path, "in.zip")


def test_not_a_zip(tmp_path):
    f = tmp_path / "in.zip"
    f.write_text("this is a text file, not a zip\n")
    assert "not a readable zip" in refused(ArchiveError, f, tmp_path / "out")


def test_missing_zip(tmp_path):
    assert "no such file" in refused(ArchiveError, tmp_path / "nope.zip", tmp_path / "out")


def test_empty_zip(make_zip, tmp_path):
    z = make_zip([])
    assert "empty" in refused(ArchiveError, z, tmp_path / "out")


def test_zip_of_folders_and_junk_only(make_zip, tmp_path):
    z = make_zip([("run/", b""), ("__MACOSX/x", b"x")])
    assert "no files" in refused(ArchiveError, z, tmp_path / "out")


def test_encrypted_entry(make_zip, tmp_path):
    z = make_zip([("a.pth", b"x")])
    patch_headers(z, local={6: ("<H", 1)}, central={8: ("<H", 1)})
    assert "encrypted" in refused(ArchiveError, z, tmp_path / "out")


# --- the destination --------------------------------------------------------------------------------------------


def test_dest_is_a_file(make_zip, tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        safe_extract(make_zip([("a.pth", b"x")]), tmp_path / "out")


def test_never_writes_through_a_link_already_in_dest(make_zip, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out/sub").symlink_to(outside)
    with pytest.raises(OutputError, match="symbolic link"):
        safe_extract(make_zip([("sub/x.pth", b"x")]), tmp_path / "out")
    assert not os.listdir(outside)


def test_a_failed_rerun_leaves_the_previous_result_untouched(make_zip, tmp_path, listing):
    dest = tmp_path / "out"
    safe_extract(make_zip([("a.pth", b"old")]), dest)
    with pytest.raises(UnsafeArchiveError):
        safe_extract(make_zip([("a.pth", b"new"), ("bomb.pth", ZEROS)], name="bad.zip"), dest)
    assert (dest / "a.pth").read_bytes() == b"old" and listing(dest) == ["a.pth"]
    only(tmp_path, "in.zip", "bad.zip", "out")


def test_zip_comment_and_declared_count_are_read(make_zip, tmp_path):
    z = make_zip([(f"{i}.pth", b"x") for i in range(4)])
    with zipfile.ZipFile(z, "a") as zf:
        zf.comment = b"made by a trainer"
    with open(z, "rb") as fp:
        assert zips._declared_entry_count(fp) == 4
    assert len(safe_extract(z, tmp_path / "out", limits=ZipLimits(max_entries=4))) == 4
