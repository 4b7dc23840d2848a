"""Hostile archives and folders: `data import` refuses them whole or skips their unusable members with a count,
and writes nothing outside the dataset folder, nothing half-written anywhere.

Archives are built in tmp_path with zipfile/tarfile; limits are lowered through `limits=` where the real ones
would need gigabytes or 100,000 files.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_core.data.archive_import import MAX_MEMBER_BYTES, ArchiveError, Limits
from cifar_core.data.imported import import_dataset
from cifar_core.data.locate import datasets_root


def png(value: int, size: tuple[int, int] = (32, 32)) -> bytes:
    """A small picture: a gradient whose level depends on `value` (so images differ)."""
    ramp = np.linspace(0, 1, size[0])[None, :, None] * np.ones((size[1], 1, 3))
    pixels = np.clip(ramp * 200 + value, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but carries almost no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def good_members(prefix: str = "") -> dict[str, bytes]:
    """Two classes of three images each, in the <class>/ layout."""
    return {f"{prefix}{cls}/{i}.png": png(i * 10 + k * 100) for k, cls in enumerate(("cat", "dog")) for i in range(3)}


def make_zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None, modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix: the file type lives in external_attr
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
        for name, mode in (modes or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, b"")
    return path


def make_tar(path: Path, members: dict[str, bytes], extra: list[tarfile.TarInfo] = (), mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info)
    return path


def special(name: str, kind: bytes, **attrs) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def nothing_left(artifacts: Path, name: str = "d") -> None:
    """No dataset, temp or old folder remains after a refused import."""
    root = datasets_root(artifacts)
    assert not (root / name).exists()
    assert not root.exists() or list(root.iterdir()) == []


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ---------------------------------------------------------------- refused as a whole


@pytest.mark.parametrize("bad", ["../evil.png", "cat/../../evil.png", "..\\evil.png", "/abs/evil.png", "\\abs\\evil.png", "C:/evil.png"])
def test_a_zip_with_a_path_leaving_it_is_refused_whole(tmp_path, isolated_artifacts, bad):
    source = make_zip(tmp_path / "a.zip", {**good_members(), bad: png(1)})
    before = files_under(tmp_path)
    with pytest.raises(ArchiveError, match="refused as a whole, nothing was imported"):
        import_dataset(source, "d")
    nothing_left(isolated_artifacts)
    assert all(new.startswith("artifacts") for new in files_under(tmp_path) - before)
    assert not (tmp_path.parent / "evil.png").exists() and not Path("/abs/evil.png").exists()


@pytest.mark.parametrize("bad", ["../evil.png", "/abs/evil.png"])
def test_a_tar_with_a_path_leaving_it_is_refused_whole(tmp_path, isolated_artifacts, bad):
    source = make_tar(tmp_path / "a.tar", {**good_members(), bad: png(1)})
    with pytest.raises(ArchiveError, match="refused as a whole"):
        import_dataset(source, "d")
    nothing_left(isolated_artifacts)


def test_a_declared_size_bomb_is_refused_from_its_header(tmp_path, isolated_artifacts):
    # A tar header that declares a terabyte with no data behind it: refused before reading on.
    bomb = tarfile.TarInfo("cat/huge.png")
    bomb.size = 10**12
    source = make_tar(tmp_path / "bomb.tar", good_members(), extra=[bomb])
    with pytest.raises(ArchiveError, match="decompression bomb"):
        import_dataset(source, "d")
    nothing_left(isolated_artifacts)


def test_the_declared_total_is_limited(tmp_path, isolated_artifacts):
    members = good_members()
    source = make_zip(tmp_path / "a.zip", members)
    with pytest.raises(ArchiveError, match="decompression bomb"):
        import_dataset(source, "d", limits=Limits(total_bytes=sum(map(len, members.values())) - 1))
    nothing_left(isolated_artifacts)
    assert import_dataset(source, "d", limits=Limits(total_bytes=sum(map(len, members.values()))))["classes"] == ["cat", "dog"]


def test_too_many_tiny_files_are_refused_before_any_is_read(tmp_path, isolated_artifacts, monkeypatch):
    from cifar_core.data import imported

    members = {f"{cls}/{i}.png": b"x" for cls in ("cat", "dog") for i in range(40)}
    source = make_zip(tmp_path / "many.zip", members)
    monkeypatch.setattr(imported, "to_input_image", lambda *a: pytest.fail("an image was decoded"))
    with pytest.raises(ArchiveError, match="more than 50 files and folders"):
        import_dataset(source, "d", limits=Limits(members=50))
    nothing_left(isolated_artifacts)


def test_a_pax_header_bomb_is_refused_before_tarfile_reads_it(tmp_path, isolated_artifacts, monkeypatch):
    from cifar_core.data import archive_import, archive_tar

    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type = tarfile.XHDTYPE  # tarfile would read all its bytes into memory to parse them
    pax.size = archive_tar.MAX_META_BYTES + 1
    source = tmp_path / "pax.tar.gz"
    with tarfile.open(source, "w:gz") as tf:
        tf.addfile(pax, io.BytesIO(b"0" * pax.size))
        for name, data in good_members().items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(archive_import, "_tar_members", lambda *a: pytest.fail("tarfile read the members"))
    with pytest.raises(ArchiveError, match=f"holds a header of {pax.size:,} bytes"):
        import_dataset(source, "d")
    nothing_left(isolated_artifacts)


def test_a_zip_declaring_too_many_members_is_refused_before_its_directory_is_read(tmp_path, isolated_artifacts, monkeypatch):
    from cifar_core.data import archive_import

    data = bytearray(make_zip(tmp_path / "a.zip", good_members()).read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8:end + 12] = struct.pack("<HH", 60_000, 60_000)  # entries on this disk, in total: the end record's claim
    (tmp_path / "a.zip").write_bytes(bytes(data))
    monkeypatch.setattr(archive_import.zipfile, "ZipFile", lambda *a, **k: pytest.fail("zipfile read the directory"))
    with pytest.raises(ArchiveError, match="more than 50,000 files and folders"):
        import_dataset(tmp_path / "a.zip", "d", limits=Limits(members=50_000))
    nothing_left(isolated_artifacts)


def test_a_damaged_archive_is_refused_and_nothing_is_left(tmp_path, isolated_artifacts):
    whole = make_tar(tmp_path / "a.tar.gz", good_members(), mode="w:gz").read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ArchiveError, match="damaged or cut short"):
        import_dataset(cut, "d")
    nothing_left(isolated_artifacts)


def test_a_file_that_is_no_archive_is_refused(tmp_path, isolated_artifacts):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ArchiveError, match="is not a .zip, a .tar"):
        import_dataset(tmp_path / "notes.txt", "d")
    with pytest.raises(ArchiveError, match="does not exist"):
        import_dataset(tmp_path / "missing.zip", "d")
    nothing_left(isolated_artifacts)


# ---------------------------------------------------------------- skipped with a count


def test_zip_links_are_skipped_never_followed(tmp_path, isolated_artifacts):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png(250))
    source = make_zip(tmp_path / "a.zip", good_members(), links={"cat/link.png": str(secret), "dog/up.png": "../../secret.png"})
    report = import_dataset(source, "d")
    assert report["skipped"] == {"links": 2}
    assert report["counts"]["train"]["cat"] + report["counts"]["test"]["cat"] == 3
    written = list(Path(report["path"]).rglob("*.png"))
    assert not any("link" in p.name or "up" in p.name for p in written)


def test_tar_links_devices_and_fifos_are_skipped(tmp_path, isolated_artifacts):
    extra = [special("cat/sym.png", tarfile.SYMTYPE, linkname="/etc/passwd"),
             special("cat/hard.png", tarfile.LNKTYPE, linkname="cat/0.png"),
             special("dog/fifo.png", tarfile.FIFOTYPE),
             special("dog/zero.png", tarfile.CHRTYPE, devmajor=1, devminor=5),
             special("dog/disk.png", tarfile.BLKTYPE, devmajor=8, devminor=0)]
    report = import_dataset(make_tar(tmp_path / "a.tar", good_members(), extra=extra), "d")
    assert report["skipped"] == {"links": 2, "special_files": 3}
    assert sum(report["counts"]["train"].values()) + sum(report["counts"]["test"].values()) == 6
    assert all(p.is_file() and not p.is_symlink() for p in Path(report["path"]).rglob("*") if p.suffix == ".png")


def test_zip_device_and_fifo_members_are_skipped(tmp_path, isolated_artifacts):
    source = make_zip(tmp_path / "a.zip", good_members(), modes={"cat/fifo.png": stat.S_IFIFO | 0o644, "dog/dev.png": stat.S_IFCHR | 0o644})
    assert import_dataset(source, "d")["skipped"] == {"special_files": 2}


def test_nested_archives_are_skipped_unopened(tmp_path, isolated_artifacts, monkeypatch):
    inner = make_zip(tmp_path / "inner.zip", good_members()).read_bytes()
    source = make_zip(tmp_path / "a.zip", {**good_members(), "cat/more.zip": inner, "dog/more.tar.gz": b"\x1f\x8b", "inner.zip": inner})
    report = import_dataset(source, "d")
    assert report["skipped"] == {"nested_archives": 3}
    assert sum(report["counts"]["train"].values()) + sum(report["counts"]["test"].values()) == 6


def test_an_oversized_member_is_skipped_without_unpacking_it(tmp_path, isolated_artifacts):
    source = tmp_path / "a.zip"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in good_members().items():
            zf.writestr(name, data)
        zf.writestr("cat/huge.png", b"\x00" * (MAX_MEMBER_BYTES + 1))  # ~50 KB compressed, declares over 50 MB
    assert source.stat().st_size < 1_000_000
    report = import_dataset(source, "d")
    assert report["skipped"] == {"too_large": 1}


def test_a_member_longer_than_the_limit_is_skipped(tmp_path, isolated_artifacts):
    members = {**good_members(), "cat/big.png": png(5, (200, 200))}
    report = import_dataset(make_tar(tmp_path / "a.tar", members), "d", limits=Limits(member_bytes=len(members["cat/big.png"]) - 1))
    assert report["skipped"] == {"too_large": 1}


def test_non_images_hidden_files_and_unreadable_images_are_counted(tmp_path, isolated_artifacts):
    members = {**good_members("wrap/"), "wrap/README.md": b"# my data", "wrap/cat/notes.txt": b"x", "wrap/.DS_Store": b"x",
               "__MACOSX/wrap/cat/._0.png": b"x", "wrap/cat/broken.png": b"not a png", "wrap/dog/cut.jpg": b"\xff\xd8\xff\xe0",
               "wrap/dog/pixel_bomb.png": png_header_only(100_000, 100_000), "wrap/cover.png": png(7)}
    report = import_dataset(make_zip(tmp_path / "a.zip", members), "d")
    assert report["skipped"] == {"not_images": 2, "hidden_files": 2, "unreadable_images": 3, "outside_class_folders": 1}
    assert report["classes"] == ["cat", "dog"]
    messages = " ".join(p["message"] for p in report["problems"])
    assert "3 skipped: images that could not be decoded" in messages and "broken.png" in messages


def test_a_folder_source_skips_links_and_fifos(tmp_path, isolated_artifacts):
    src = tmp_path / "src"
    for name, data in good_members().items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(png(3))
    (src / "cat" / "link.png").symlink_to(outside / "x.png")
    (src / "linked_class").symlink_to(outside)
    os.mkfifo(src / "dog" / "pipe.png")
    report = import_dataset(src, "d")
    assert report["skipped"] == {"links": 2, "special_files": 1}
    assert report["classes"] == ["cat", "dog"]
