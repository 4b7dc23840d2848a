"""Presets shared by the Train page and `train --preset`, and the "Your images" preset's measured start."""

import dataclasses
import json
from pathlib import Path

import pytest

from cifar_core.training import presets
from cifar_core.training import start_choice
from cifar_core.views import train_form
from cifar_core.cli.main import main
from cifar_core.config import ConfigError, TrainConfig
from tests.test_pages import open_page, unescape


def test_every_preset_has_a_short_key_a_display_name_help_and_valid_settings():
    assert presets.names() == ["quick", "recipe", "seed", "yours"]
    for key, preset in presets.PRESETS.items():
        assert preset.name and preset.help and preset.name != key
        TrainConfig(**presets.preset_settings(key)).validate()  # the shipped model is committed: "yours" validates


def test_the_form_fills_in_a_preset_by_its_key():
    values = train_form.form_defaults("yours")
    assert values["measure_start"] is True and values["weights"] == str(start_choice.yours()["weights"])
    assert values["weights"].endswith("default/model.keras")
    assert train_form.form_defaults("quick")["limit"] == 1000


def test_an_unknown_preset_is_refused_with_the_list_of_presets(capsys):
    with pytest.raises(ConfigError) as err:
        presets.preset_settings("nope")
    assert "quick, recipe, seed, yours" in err.value.errors["preset"]
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--preset", "nope"])
    assert exit_.value.code == 2
    assert "'quick', 'recipe', 'seed', 'yours'" in capsys.readouterr().err


@pytest.fixture
def started(monkeypatch):
    """The configs `train` would have trained (nothing trains): a list filled by cmd_train."""
    import cifar_core.training.trainer

    configs = []

    def fake_train(config, **kwargs):
        configs.append(config)
        return {"status": "completed", "run_id": None}

    monkeypatch.setattr(cifar_core.training.trainer, "train", fake_train)
    return configs


def test_train_preset_takes_flags_given_with_it_over_its_values(tiny_data, started):
    assert main(["train", "--preset", "quick", "--epochs-finetune", "1", "--data-dir", str(tiny_data)]) == 0
    (config,) = started
    assert config.epochs_finetune == 1  # the flag
    assert (config.width, config.limit, config.optimizer) == (0.25, 1000, "sgd")  # the preset's
    assert main(["train", "--preset", "yours", "--data-dir", str(tiny_data)]) == 0
    assert started[1].measure_start and started[1].weights == start_choice.yours()["weights"]


def test_yours_without_the_shipped_model_is_refused_in_words(tiny_data, tmp_path, monkeypatch, started, capsys):
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(tmp_path / "no-model-here"))
    assert main(["train", "--preset", "yours", "--data-dir", str(tiny_data)]) == 2
    err = capsys.readouterr().err
    assert "error: --weights:" in err and "does not exist: measuring how much of a trained base to reuse needs that model" in err
    assert main(["train", "--preset", "yours", "--weights", "none", "--data-dir", str(tiny_data)]) == 2
    assert "error: --measure-start: needs a trained base to measure" in capsys.readouterr().err
    assert not started


def test_resume_refuses_a_preset(capsys):
    assert main(["train", "--resume", "some-run", "--preset", "quick"]) == 2
    assert "--preset cannot change them" in capsys.readouterr().err


def test_a_damaged_start_choice_record_is_described_in_words():
    assert start_choice.describe("garbage") == "start measured, but its record is unreadable"
    assert start_choice.describe({"chosen": "head only", "trials": [{"candidate": "head only", "val_accuracy": "x"}],
                                  "val_images": 3}) == "start measured on 3 validation images: no readable trial; chose head only"


def test_the_candidates_spend_the_runs_epochs_and_trials_a_share_of_them():
    config = TrainConfig(**start_choice.yours())
    found = start_choice.candidates(config)
    assert list(found) == ["head only", "fine-tune", "from scratch"]
    total = config.epochs_head + config.epochs_finetune
    assert found["head only"] == dict(epochs_head=total, epochs_finetune=0)
    assert found["from scratch"]["weights"] == "none" and found["from scratch"]["epochs_finetune"] == total
    scratch = start_choice.settings(config, found["from scratch"])
    assert not scratch.measure_start and scratch.validate()
    trial = start_choice.shortened(scratch)
    assert 1 <= trial.epochs_finetune < scratch.epochs_finetune and trial.epochs_head == 0
    # Nothing to fine-tune: that candidate is left out.
    assert "fine-tune" not in start_choice.candidates(dataclasses.replace(config, epochs_finetune=0))


@pytest.mark.slow
def test_yours_measures_each_start_then_trains_the_best_with_the_datas_classes(tiny_data, capsys):
    from cifar_core.model.vgg import load_model
    from cifar_core.runs.store import RunStore

    assert main(["train", "--preset", "yours", "--data-dir", str(tiny_data), "--classes", "cat", "dog", "ship",
                 "--epochs-head", "1", "--epochs-finetune", "1", "--batch-size", "8"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    choice = summary["start_choice"]
    trials = {t["candidate"]: t for t in choice["trials"]}
    assert list(trials) == ["head only", "fine-tune", "from scratch"]
    assert choice["chosen"] == max(trials.values(), key=lambda t: t["val_accuracy"])["candidate"]
    assert choice["val_images"] == summary["val_images"] > 0
    assert load_model(f"{summary['run_dir']}/model.keras").output_shape[-1] == 3  # the dataset's classes, not ten
    log = (Path(summary["run_dir"]) / "train.log").read_text()
    assert "start trial from scratch: validation accuracy" in log and f"start chosen: {choice['chosen']}" in log
    assert main(["runs"]) == 0
    assert f"chose {choice['chosen']}" in capsys.readouterr().out
    assert RunStore().get(summary["run_id"]).summary["start_choice"] == choice


@pytest.mark.slow
def test_bench_yours_quick_trains_each_variant_on_both_datasets(shared_data, isolated_artifacts):
    from cifar_core.bench.yours import VARIANTS, run_yours

    rows = list(run_yours(str(shared_data), quick=True))
    assert [(r["dataset"], r["variant"]) for r in rows] == [(d, v) for d in ("cifar5", "digits") for v in VARIANTS]
    assert [r["classes"] for r in rows] == [5] * 3 + [10] * 3
    for row in rows:
        assert 0 <= row["test_accuracy"] <= 1 and row["seconds"] > 0
    preset = rows[0]
    assert preset["chosen"] in [t["candidate"] for t in preset["trials"]]
    assert rows[1]["weights"] == "none" and rows[2]["epochs"]["finetune"] == 0
    # The temporary datasets' decode caches are gone; only CIFAR-10's own remains.
    assert len(list((isolated_artifacts / "cache").glob("cifar10-*"))) == 1


def test_the_train_page_offers_every_preset_by_name_and_shows_a_runs_start_choice(tiny_data, monkeypatch):
    from cifar_core.runs.store import RunStore

    monkeypatch.setenv("CIFAR10_DIR", str(tiny_data))
    at = open_page("train")
    assert at.selectbox(key="train_preset").options == [p.name for p in presets.PRESETS.values()]
    at.selectbox(key="train_preset").set_value("yours").run()
    assert at.toggle(key="cfg_measure_start").value is True
    assert at.text_input(key="cfg_weights").value == start_choice.yours()["weights"]
    assert presets.PRESETS["yours"].help in [c.value for c in at.caption]
    store = RunStore()
    run = store.create(TrainConfig(**{**start_choice.yours(), "data_dir": str(tiny_data)}))
    trials = [{"candidate": "head only", "val_accuracy": 0.5}, {"candidate": "from scratch", "val_accuracy": 0.75}]
    store.finish(run.id, "completed", summary={"start_choice": {"chosen": "from scratch", "trials": trials, "val_images": 8}})
    at = open_page("train")
    assert "start measured on 8 validation images: head only 50.0%, from scratch 75.0%; chose from scratch" in [
        unescape(c.value) for c in at.caption]


def test_bench_yours_without_cifar10_says_what_it_needs(capsys):
    assert main(["bench", "yours", "--quick"]) == 2
    assert "error: --data-dir: bench yours builds its 5-class subset from CIFAR-10" in capsys.readouterr().err


@pytest.mark.slow
def test_a_stop_during_the_trials_ends_them_and_the_run(tiny_data, monkeypatch):
    from cifar_core.runs.store import RunStore
    from cifar_core.training.trainer import train

    monkeypatch.setattr(RunStore, "stop_requested", lambda self, run_id: True)  # asked to stop from the first batch on
    config = TrainConfig(**{**start_choice.yours(), "data_dir": str(tiny_data), "epochs_head": 1, "epochs_finetune": 1,
                            "batch_size": 8})
    summary = train(config, store=RunStore())
    assert summary["status"] == "stopped"
    assert [t["candidate"] for t in summary["start_choice"]["trials"]] == ["head only"]  # no trial after the stop
