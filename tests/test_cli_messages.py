"""CLI failures that used to end in a Python error name end in words."""

import shutil

from cifar_core.cli.main import main


def test_evaluate_val_split_of_a_model_without_settings_is_refused_in_words(tmp_path, capsys):
    """It raised a NameError (RunError was never imported in cmd_evaluate)."""
    shutil.copy("artifacts/default/model.keras", tmp_path / "model.keras")
    assert main(["evaluate", "--model", str(tmp_path / "model.keras"), "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert "has no config.json beside it" in err and "use --split test" in err and "Error" not in err
