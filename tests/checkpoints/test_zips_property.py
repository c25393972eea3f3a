"""Property: whatever the archive's names and contents, safe_extract writes nothing outside its target folder."""
from __future__ import annotations

import os
import stat
import tempfile
import warnings
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from prunehess.checkpoints.zips import ZipLimits, safe_extract
from prunehess.errors import ArchiveError

TRICKY_PARTS = ["..", ".", "", "...", "C:", "D:x", "~", "$HOME", "__MACOSX", ".DS_Store", "._a", "a", "A",
                "caf\u00e9", "cafe\u0301", "\u00df", "ss", "\u202e", " ", "a b", "\u4e2d\u6587", "x" * 100]
plain = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/\\:"), min_size=1, max_size=6)
parts = st.one_of(
    plain.filter(lambda p: p not in (".", "..")),
    st.sampled_from(TRICKY_PARTS),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=6),
)


def join_name(lead: str, ps: list[str], seps: list[str], trail: bool) -> str:
    """``lead`` + the parts joined by the separators (+ a trailing separator: a folder entry)."""
    return lead + "".join(p + s for p, s in zip(ps[:-1], seps)) + ps[-1] + (seps[-1] if trail else "")


wild_names = st.builds(
    join_name,
    st.sampled_from([""] * 6 + ["/", "\\", "//", "C:", "C:\\", "../"]),
    st.lists(parts, min_size=1, max_size=4),
    st.lists(st.sampled_from(["/", "/", "/", "\\", "//"]), min_size=4, max_size=4),
    st.sampled_from([False, False, False, True]),
)
benign_names = st.lists(plain.filter(lambda p: p not in (".", "..")), min_size=1, max_size=3).map("/".join)
names = st.one_of(benign_names, benign_names, benign_names, wild_names)
modes = st.sampled_from([None] * 16 + [stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755, stat.S_IFLNK | 0o777])
contents = st.one_of(st.binary(max_size=40), st.integers(0, 50_000).map(lambda n: b"\0" * n))
entries = st.lists(st.tuples(names, contents, modes), min_size=1, max_size=5)
limits = st.sampled_from([ZipLimits(), ZipLimits(max_total_bytes=30_000, max_ratio=20.0, ratio_floor_bytes=1000)])


def build(path: Path, items: list) -> bool:
    """Write the archive; False if zipfile itself cannot write such a name."""
    try:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Duplicate name": wanted
            for name, data, mode in items:
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                if mode is not None:
                    info.create_system = 3
                    info.external_attr = mode << 16
                zf.writestr(info, data)
    except (ValueError, UnicodeError, OSError):
        return False
    return True


def everything_under(root: Path) -> list[Path]:
    return [Path(d, n) for d, dirs, files in os.walk(root) for n in dirs + files]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=entries, lim=limits)
def test_nothing_is_written_outside_the_target_folder(items, lim):
    with tempfile.TemporaryDirectory() as sandbox_name:
        sandbox = Path(sandbox_name)
        zip_path, dest = sandbox / "in.zip", sandbox / "box" / "out"
        (sandbox / "box").mkdir()
        if not build(zip_path, items):
            return
        for attempt in range(2):  # the second run checks that a rerun over the result is safe too
            try:
                written = safe_extract(zip_path, dest, limits=lim)
            except ArchiveError as exc:
                event(f"refused: {type(exc).__name__}")
                assert "\n" not in str(exc)
                assert attempt == 0 and not dest.exists(), "a refused zip left something behind"
                written = None
            outside = [p for p in everything_under(sandbox) if p not in (zip_path, sandbox / "box", dest)
                       and dest not in p.parents]
            assert not outside, f"written outside the target folder: {outside}"
            assert not any(p.is_symlink() for p in everything_under(sandbox))
            if written is None:
                break
            event("extracted")
            real_dest = dest.resolve()
            for p in written:
                assert real_dest in p.resolve().parents and p.is_file()
            files = {p for p in everything_under(dest) if p.is_file()}
            assert files == set(written), "files that safe_extract did not report"
