"""Issue 25, break 2 and the refusal messages: model files whose compressed parts unpack to more than they
declare are refused within 500 MB of memory, before Keras reads them (`predict`, `evaluate`, `similar` and
`train --weights` all load through vgg.load_model); a refusal is one readable line naming the file."""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from hostile_files import RawMember, bzip2_zeros, lzma_zeros, peak_rss_growth_mb, raw_zip, zip_lzma_member

from cifar_core.cli import main as cli
from cifar_core.model.vgg import ModelLoadError, WeightsError, build_model, load_base_weights, load_model

MAX_GROWTH_MB = 500


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, tiny_data) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_model(tiny_config(tiny_data), num_classes=10).save(path)
    return path


def rebuilt(source: Path, dest: Path, member: str, data: bytes, method: int) -> Path:
    """A copy of a .keras archive whose `member` holds `data` (compressed by `method`) while still declaring
    its original size and CRC."""
    with zipfile.ZipFile(source) as z:
        infos = z.infolist()
        members = [RawMember(i.filename.encode(), data if i.filename == member else z.read(i), i.compress_type
                             if i.filename != member else method, size=i.file_size, crc=i.CRC) for i in infos]
    return raw_zip(dest, members)


def refused(path: Path, match: str) -> tuple[str, float]:
    """(ModelLoadError's message for loading `path`, the peak memory growth in MB)."""
    errors = []

    def load():
        with pytest.raises(ModelLoadError, match=match) as caught:
            load_model(path)
        errors.append(str(caught.value))

    growth = peak_rss_growth_mb(load)
    assert errors and "\n" not in errors[0] and len(errors[0]) <= 300 and path.name in errors[0], errors
    return errors[0], growth


@pytest.mark.parametrize("member", ["config.json", "model.weights.h5"])
def test_a_1_9_gib_bzip2_member_inside_a_keras_file_is_refused_within_500_mb(model_file, tmp_path, member):
    bomb = rebuilt(model_file, tmp_path / "bomb.keras", member, bzip2_zeros(1.9), zipfile.ZIP_BZIP2)
    message, growth = refused(bomb, "unpacks to more than the [0-9,]+ bytes it declares")
    assert member in message and growth < MAX_GROWTH_MB


def test_an_lzma_member_inside_a_keras_file_is_refused(model_file, tmp_path):
    bomb = rebuilt(model_file, tmp_path / "bomb.keras", "config.json", zip_lzma_member(lzma_zeros(64)), zipfile.ZIP_LZMA)
    refused(bomb, "unpacks to more than")
    big_dict = rebuilt(model_file, tmp_path / "dict.keras", "config.json", zip_lzma_member(lzma_zeros(1), 1 << 31), zipfile.ZIP_LZMA)
    refused(big_dict, "declares an LZMA dictionary of 2,048 MiB")


def test_a_keras_file_whose_directory_outnumbers_its_end_record_is_refused(model_file, tmp_path):
    data = bytearray(model_file.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    start = int.from_bytes(data[end + 16:end + 20], "little")
    entry_end = data.find(b"PK\x01\x02", start + 4)
    entry = bytes(data[start:entry_end])
    directory = entry * 100  # 100 entries where the end record declares 3
    bomb = tmp_path / "many.keras"
    bomb.write_bytes(bytes(data[:start]) + directory + bytes(data[end:end + 12]) + len(directory).to_bytes(4, "little")
                     + bytes(data[end + 16:]))
    refused(bomb, "holds more than 64 files and folders")


@pytest.mark.slow  # h5py reads a compressed member by seeking back and forth: each seek back unpacks it again
def test_every_compression_of_a_real_keras_file_still_loads(model_file, tmp_path):
    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        copy = tmp_path / f"m{method}.keras"
        with zipfile.ZipFile(model_file) as z, zipfile.ZipFile(copy, "w", compression=method) as out:
            for info in z.infolist():
                out.writestr(info.filename, z.read(info))
        assert load_model(copy).count_params() == load_model(model_file).count_params()


def test_a_refused_config_holding_the_os_module_is_one_short_line(model_file, tmp_path, capsys):
    def evil(config: dict) -> dict:
        padding = {f"note_{i}": "x" * 100 for i in range(400)}  # 42 KB of config that Keras' message would quote
        return {"module": "os", "class_name": "system", "config": {"command": "touch pwned", **padding}, "registered_name": None}

    with zipfile.ZipFile(model_file) as z:
        members = [RawMember(i.filename.encode(), json.dumps(evil(json.loads(z.read(i)))).encode() if i.filename == "config.json"
                             else z.read(i)) for i in z.infolist()]
    bad = raw_zip(tmp_path / "os.keras", members)
    message, _ = refused(bad, "could not be loaded")
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    assert cli.main(["predict", "--model", str(bad), str(image)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and len(err[0]) <= 320 and "os.keras" in err[0], err
    assert not Path("pwned").exists()


def test_a_weights_file_whose_gzip_chunk_unpacks_to_a_gigabyte_is_refused_within_500_mb(tmp_path):
    import h5py

    from cifar_core.model.vgg import build_base

    base = build_base("vgg16_bn", "none", 32, "block3_pool", 0.125)
    path = tmp_path / "chunk.weights.h5"
    compressor = zlib.compressobj(9)
    raw = b"".join(compressor.compress(bytes(1 << 24)) for _ in range(64)) + compressor.flush()  # 1 GiB of zeros, 1 MB
    with h5py.File(path, "w") as f:
        dataset = f.create_dataset("vars/0", shape=(1024,), dtype="f4", chunks=(1024,), compression="gzip")
        dataset.id.write_direct_chunk((0,), raw, 0)  # a 4 KB chunk whose stored bytes unpack to 1 GiB
    raised = []

    def load():
        with pytest.raises(WeightsError, match="vars/0 is stored compressed") as caught:
            load_base_weights(base, path)
        raised.append(str(caught.value))

    assert peak_rss_growth_mb(load) < MAX_GROWTH_MB and raised
    assert "\n" not in raised[0] and len(raised[0]) <= 300


def test_a_run_folders_predictions_whose_npz_member_unpacks_to_gigabytes_are_refused(tmp_path):
    from cifar_core.predict.evaluate import Interpretation

    import io

    buffer = io.BytesIO()
    np.save(buffer, np.zeros((4, 10), np.float32))
    probs = buffer.getvalue()
    raw_zip(tmp_path / "test_probs.npz", [RawMember(b"probs.npy", bzip2_zeros(1.9), zipfile.ZIP_BZIP2, size=len(probs),
                                                    crc=zlib.crc32(probs)), RawMember(b"y.npy", probs)])
    raised = []

    def load():
        with pytest.raises(ValueError, match="test_probs.npz holds a member .*probs.npy.* unpacks to more than") as caught:
            Interpretation.load(tmp_path)
        raised.append(caught)

    assert peak_rss_growth_mb(load) < MAX_GROWTH_MB and raised
