"""Issue 25, breaks 1, 5, 6 and 9 through the Data page: a hostile or damaged archive uploaded there is refused
in words within 500 MB (the page calls the same import as the CLI), the page keeps working, and a dataset
whose class names are longer than a file name may be is listed under its real names."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest
from hostile_files import RawMember, bzip2_zeros, peak_rss_growth_mb, raw_zip
from test_data_page import button, open_data_page, png

from tests.test_pages import shown, unescape, with_data  # noqa: F401 (fixtures)


def members(classes: tuple[str, ...]) -> dict[str, bytes]:
    return {f"{cls}/{i}.png": png(10 * k + i) for k, cls in enumerate(classes) for i in range(5)}


def latin1_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
        for name, data in members(("café", "dog")).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def upload(at, name: str, data: bytes) -> None:
    at.file_uploader(key="data_archive_0").set_value([(name, data, "application/octet-stream")]).run()
    button(at, "Import").click().run()


@pytest.mark.parametrize("kind", ["bzip2 bomb", "non-UTF-8 name flagged UTF-8", "latin-1 class folder"])
def test_a_hostile_or_damaged_upload_is_refused_in_words_and_the_page_keeps_working(tmp_path, kind):
    good = [RawMember(name.encode(), data) for name, data in members(("cat", "dog")).items()]
    if kind == "bzip2 bomb":
        archive = raw_zip(tmp_path / "a.zip", good + [RawMember(b"cat/bomb.png", bzip2_zeros(1.9), zipfile.ZIP_BZIP2, size=973)])
        name, data = "bomb.zip", archive.read_bytes()
    elif kind == "non-UTF-8 name flagged UTF-8":
        name, data = "damaged.zip", raw_zip(tmp_path / "a.zip", good + [RawMember(b"caf\xe9/x.png", b"x", flags=0x800)]).read_bytes()
    else:
        name, data = "old.tar", latin1_tar()
    at = open_data_page()
    growth = peak_rss_growth_mb(lambda: upload(at, name, data))
    assert not at.exception, [e.value for e in at.exception]
    errors = [unescape(e.value) for e in at.error if e.value.startswith("The dataset could not be imported: ")]
    # The page stores the upload as upload.<its endings> and the message names that file.
    assert len(errors) == 1 and "upload." + name.split(".")[-1] in errors[0] and "\n" not in errors[0], errors
    assert growth < 500
    assert not list((tmp_path / "artifacts" / "datasets").glob("[!.]*"))
    at.run()  # the next visit
    assert not at.exception, [e.value for e in at.exception]


def test_class_names_longer_than_a_file_name_are_listed_as_themselves(tmp_path):
    cat, dog = "🐈" * 100, "dog"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member, data in members((cat, dog)).items():
            zf.writestr(member, data)
    at = open_data_page()
    upload(at, "long-names.zip", buf.getvalue())
    assert not at.exception, [e.value for e in at.exception]
    assert at.dataframe[0].value["class names"].tolist() == [", ".join(sorted((cat, dog)))]
    assert cat in unescape(shown(at.main))
