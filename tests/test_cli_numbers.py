"""Every numeric CLI option is read one way (ASCII digits, no underscores, ranges checked): exit 2 in words."""

import pytest
from PIL import Image

from cifar_core.cli.main import main

BAD_NUMBERS = [
    ["export", "--format", "tflite", "--images", "\u0663"],      # Arabic-Indic three
    ["export", "--format", "tflite", "--images", "1_000"],
    ["export", "--format", "tflite", "--images", "0"],
    ["data", "import", "x.zip", "--name", "x", "--test-fraction", "\u0660.\u0669"],  # Arabic-Indic 0.9
    ["data", "import", "x.zip", "--name", "x", "--test-fraction", "0.9_9"],
    ["data", "import", "x.zip", "--name", "x", "--test-fraction", "1.5"],
    ["gradcam", "--images", "\uff15"],                           # fullwidth five
    ["predict", "--top", "0", "x.png"],
]


@pytest.mark.parametrize("argv", BAD_NUMBERS, ids=lambda a: " ".join(a))
def test_numbers_in_other_scripts_or_out_of_range_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "number" in err


@pytest.mark.parametrize("top", ["11", "1000"])
def test_predict_top_above_the_models_classes_exits_2(top, tmp_path, capsys):
    image = tmp_path / "cat.png"
    Image.new("RGB", (32, 32), (120, 80, 40)).save(image)
    assert main(["predict", "--model", "artifacts/default", "--top", top, str(image)]) == 2
    err = capsys.readouterr().err
    assert "from 1 to 10" in err and top in err


def test_no_command_suggests_an_option_it_lacks():
    """The data loader's message suggests --skip-bad; every command that loads data has it."""
    from cifar_core.cli.main import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("train", "evaluate", "gradcam", "inspect", "export"):
        flags = {f for action in subparsers[name]._actions for f in action.option_strings}
        assert "--skip-bad" in flags, name
