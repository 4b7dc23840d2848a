"""cifar_core.predict.inference: any image mode becomes a 32x32 RGB array; bad files become per-file errors."""

import io
import re

import keras
import numpy as np
import pytest
from PIL import Image

from cifar_core.data.classes import CLASS_NAMES
from cifar_core.data.image_limits import ImageError
from cifar_core.predict.inference import Classifier, load_image


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def check_rgb(arr: np.ndarray) -> np.ndarray:
    assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8
    return arr.astype(int)


def test_rgba_is_composited_on_white():
    arr = check_rgb(load_image(encode(Image.new("RGBA", (50, 40), (255, 0, 0, 128)))))
    np.testing.assert_allclose(arr[16, 16], [255, 127, 127], atol=2)


def test_grayscale_becomes_three_equal_channels():
    arr = check_rgb(load_image(encode(Image.new("L", (32, 32), 90))))
    assert (arr == 90).all()


def test_palette_with_and_without_transparency():
    pal = Image.new("P", (40, 40), 0)
    pal.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    np.testing.assert_array_equal(check_rgb(load_image(encode(pal)))[0, 0], [0, 0, 255])
    np.testing.assert_array_equal(check_rgb(load_image(encode(pal, transparency=0)))[0, 0], [255, 255, 255])


def test_16_bit_grayscale_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    arr = check_rgb(load_image(encode(Image.fromarray(ramp))))
    assert arr[:, 0].max() < 20 and arr[:, -1].min() > 235
    assert 100 < arr[0, 16, 0] < 155  # mid-grey stays mid-grey (clipping would make it 255)


def test_cmyk_jpeg_becomes_rgb():
    arr = check_rgb(load_image(encode(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG")))
    assert arr[16, 16, 0] > 200 and arr[16, 16, 1] < 60 and arr[16, 16, 2] < 60  # red


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (64, 32), (255, 0, 0))
    im.paste((0, 0, 255), (32, 0, 64, 32))  # stored: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: red on top
    arr = check_rgb(load_image(encode(im, "JPEG", exif=exif.tobytes(), quality=95)))
    assert arr[2, 16, 0] > 200 and arr[2, 16, 2] < 60
    assert arr[29, 16, 2] > 200 and arr[29, 16, 0] < 60


def test_large_image_is_downscaled():
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (2000, 3000, 3), dtype=np.uint8))
    check_rgb(load_image(encode(im, "JPEG")))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"this is a text file, not a picture", "not a readable image"),
        (encode(Image.new("RGB", (64, 64), (1, 2, 3)))[:60], "not a readable image"),
    ],
    ids=["zero-byte", "not-an-image", "truncated"],
)
def test_bad_bytes_raise_image_error_with_a_message(data, message):
    with pytest.raises(ImageError, match=message) as err:
        load_image(data)
    # Words only: no exception class names, object reprs or addresses.
    assert not re.search(r"Error\b|<.*>|0x[0-9a-f]+", str(err.value)), str(err.value)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Flatten()(keras.layers.AveragePooling2D(4)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    path = tmp_path_factory.mktemp("model") / "m.keras"
    model.save(path)
    return Classifier(path)


def test_classify_bytes_reports_errors_per_file_and_predicts_the_rest(classifier):
    red = encode(Image.new("RGB", (80, 60), (255, 0, 0)))
    grey = encode(Image.new("L", (20, 20), 30), "JPEG")
    results = classifier.classify_bytes(
        [("red.png", red), ("notes.txt", b"hello"), ("grey.jpg", grey), ("empty.png", b"")], top_k=3,
    )
    assert [r.file for r in results] == ["red.png", "notes.txt", "grey.jpg", "empty.png"]
    assert [r.error is None for r in results] == [True, False, True, False]
    assert "not a readable image" in results[1].error and "empty" in results[3].error
    for r, data in ((results[0], red), (results[2], grey)):
        expected = classifier.predict_arrays(load_image(data)[None])[0]
        np.testing.assert_allclose(r.probs, expected, atol=1e-6)
        assert [t["label"] for t in r.top] == [CLASS_NAMES[i] for i in np.argsort(-expected)[:3]]
        # The fixture model has no ood.json: its lines say so with nulls.
        assert r.to_json() == {"file": r.file, "top": r.top, "none_of_these": None, "ood_score": None, "ood_threshold": None}
    assert results[1].to_json() == {"file": "notes.txt", "error": results[1].error}


def test_classify_files_reports_unreadable_paths(classifier, tmp_path):
    good = tmp_path / "ok.png"
    good.write_bytes(encode(Image.new("RGB", (32, 32), (0, 200, 0))))
    results = classifier.classify_files([good, tmp_path / "missing.png"])
    assert results[0].error is None and len(results[0].top) == 3
    assert results[1].top is None and "cannot read the file" in results[1].error
