"""Presets: the shipped Lab 4 set matches the lab's table; user presets save, list and load; bad files are refused."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tuner_tui.engine.config import RunConfig
from tuner_tui.runs.presets import (
    SHIPPED_PRESETS_DIR,
    Preset,
    PresetError,
    UnknownPresetError,
    list_presets,
    load_preset,
    preset_errors,
    preset_to_toml,
    save_preset,
    user_presets_dir,
)

LAB4_MD = Path(__file__).resolve().parents[2] / "shared" / "LAB4.md"
DATASET_TITLES = {"Fashion-MNIST": "fmnist", "CIFAR-10": "cifar10"}
EXAMPLE_MODELS = {"lab4_student", "torch_mlp"}  # model files of example code (tests/test_examples.py)


def _shipped_preset_files() -> list[Path]:
    """The shipped presets of the built-in network: every shipped TOML but the example model files."""
    return [path for path in SHIPPED_PRESETS_DIR.glob("*.toml") if path.stem not in EXAMPLE_MODELS]


def _lab4_table() -> dict[str, dict[str, str]]:
    """The rows of LAB4.md's experiments table, by preset name."""
    if not LAB4_MD.is_file():
        pytest.skip(f"{LAB4_MD} is absent")
    rows = {}
    for line in LAB4_MD.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(r"(fmnist|cifar)_exp\d+", cells[0]):
            keys = ("dataset", "layers", "lr", "batch", "epochs", "reg")
            rows[cells[0]] = dict(zip(keys, cells[1:], strict=True))
    return rows


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty per-user config folder."""
    monkeypatch.setenv("TUNER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


def _write_user_preset(name: str, text: str) -> Path:
    directory = user_presets_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


CUSTOM = RunConfig(dataset="cifar10", hidden=(512, 128), lr=0.005, batch_size=64, epochs=3, reg=0.0001, seed=7)


def test_lab4_table_has_twenty_experiments() -> None:
    assert len(_lab4_table()) == 20


@pytest.mark.parametrize("name", [f"fmnist_exp{i}" for i in range(1, 11)] + [f"cifar_exp{i}" for i in range(1, 11)])
def test_shipped_lab_preset_matches_lab4_table(name: str) -> None:
    row = _lab4_table()[name]
    config = load_preset(name).config
    assert config.dataset == DATASET_TITLES[row["dataset"]]
    assert config.layers_label == row["layers"]
    assert config.lr == float(row["lr"])
    assert config.batch_size == int(row["batch"])
    assert config.epochs == int(row["epochs"])
    assert config.reg == float(row["reg"])


def test_shipped_presets_are_the_twenty_lab_experiments_and_fmnist_quick() -> None:
    shipped = {preset.name for preset in list_presets() if preset.shipped}
    assert shipped == set(_lab4_table()) | {"fmnist_quick"}


def test_every_shipped_file_loads_without_errors() -> None:
    assert preset_errors() == []
    assert len(_shipped_preset_files()) == 21
    assert {path.stem for path in SHIPPED_PRESETS_DIR.glob("*.toml")} - {p.stem for p in _shipped_preset_files()} == (
        EXAMPLE_MODELS
    )


def test_shipped_presets_use_lab4_conventions_native_engine_auto_device_seed_zero() -> None:
    for preset in list_presets():
        assert (preset.config.conventions, preset.config.engine, preset.config.device) == ("lab4", "native", "auto")
        assert preset.config.seed == 0
        assert preset.config.data_root is None


def test_shipped_files_name_every_field_of_the_lab_and_leave_the_rest_default() -> None:
    expected = set(RunConfig().to_dict()) - {"data_root", "chance_patience", "validation"}
    for path in _shipped_preset_files():
        assert set(tomllib.loads(path.read_text(encoding="utf-8"))) == expected, path.name


def test_shipped_files_begin_with_a_one_line_comment() -> None:
    for path in _shipped_preset_files():
        first, second = path.read_text(encoding="utf-8").splitlines()[:2]
        assert first.startswith("# ") and not second.startswith("#"), path.name


def test_fmnist_quick_is_a_one_epoch_smoke_test() -> None:
    config = load_preset("fmnist_quick").config
    assert config == RunConfig(dataset="fmnist", hidden=(256,), lr=0.01, batch_size=100, epochs=1, reg=0.0)


def test_presets_are_listed_in_natural_order() -> None:
    names = [preset.name for preset in list_presets()]
    assert names.index("fmnist_exp2") < names.index("fmnist_exp10")
    assert names.index("cifar_exp9") < names.index("cifar_exp10")
    assert names[0] == "cifar_exp1"


def test_user_presets_dir_follows_env_var(config_dir: Path) -> None:
    assert user_presets_dir() == config_dir / "presets"


def test_saved_preset_is_listed_and_loads_back_equal() -> None:
    path = save_preset("my-run_1", CUSTOM)
    assert path == user_presets_dir() / "my-run_1.toml"
    listed = {preset.name: preset for preset in list_presets()}
    assert listed["my-run_1"] == Preset(name="my-run_1", path=path, config=CUSTOM, shipped=False)
    assert load_preset("my-run_1").config == CUSTOM


def test_saved_file_writes_hidden_as_array_and_omits_unset_data_root() -> None:
    data = tomllib.loads(save_preset("mine", CUSTOM).read_text(encoding="utf-8"))
    assert data["hidden"] == [512, 128]
    assert "data_root" not in data


def test_saved_data_root_with_quotes_and_backslashes_round_trips() -> None:
    config = RunConfig(data_root='C:\\data\\"lab4"\tsets\x7f')
    save_preset("windows", config)
    assert load_preset("windows").config == config


def test_save_leaves_no_temporary_files() -> None:
    save_preset("mine", CUSTOM)
    save_preset("mine", RunConfig(), overwrite=True)
    assert [path.name for path in user_presets_dir().iterdir()] == ["mine.toml"]


def test_preset_to_toml_parses_back_to_the_same_config() -> None:
    assert RunConfig.from_mapping(tomllib.loads(preset_to_toml(CUSTOM))) == CUSTOM


def test_saving_a_shipped_name_is_refused() -> None:
    with pytest.raises(PresetError, match=r"fmnist_exp1.*shipped"):
        save_preset("fmnist_exp1", CUSTOM, overwrite=True)
    assert not (user_presets_dir() / "fmnist_exp1.toml").exists()


def test_saving_over_a_user_preset_is_refused_without_overwrite() -> None:
    save_preset("mine", CUSTOM)
    with pytest.raises(PresetError, match="already exists"):
        save_preset("mine", RunConfig())
    assert load_preset("mine").config == CUSTOM


def test_saving_over_a_user_preset_with_overwrite_replaces_it() -> None:
    save_preset("mine", CUSTOM)
    save_preset("mine", RunConfig(), overwrite=True)
    assert load_preset("mine").config == RunConfig()


@pytest.mark.parametrize("name", ["", "has space", "../escape", "dot.name", "x" * 65])
def test_saving_an_invalid_name_is_refused(name: str) -> None:
    with pytest.raises(PresetError, match="letters, digits"):
        save_preset(name, CUSTOM)


def test_malformed_toml_is_refused_naming_the_file() -> None:
    path = _write_user_preset("broken", "lr = = 0.1\n")
    with pytest.raises(PresetError, match=re.escape(str(path)) + ": not valid TOML"):
        load_preset("broken")


def test_unknown_key_is_refused_naming_the_key() -> None:
    path = _write_user_preset("typo", "learning_rate = 0.1\n")
    with pytest.raises(PresetError, match=re.escape(f"{path}: learning_rate: unknown key")) as caught:
        load_preset("typo")
    assert caught.value.key == "learning_rate"


def test_out_of_range_value_is_refused_naming_the_key_and_range() -> None:
    path = _write_user_preset("huge", "epochs = 5000\n")
    with pytest.raises(PresetError, match=re.escape(f"{path}: epochs: must be a whole number in [1, 1000]")):
        load_preset("huge")


def test_wrong_type_value_is_refused_naming_the_key() -> None:
    path = _write_user_preset("words", 'lr = "fast"\n')
    with pytest.raises(PresetError, match=re.escape(f"{path}: lr: must be a number")):
        load_preset("words")


def test_fractional_epochs_are_refused() -> None:
    _write_user_preset("half", "epochs = 2.5\n")
    with pytest.raises(PresetError, match="epochs: must be a whole number"):
        load_preset("half")


def test_a_broken_user_file_is_skipped_by_the_listing_and_reported() -> None:
    path = _write_user_preset("broken", "hidden = [256,\n")
    save_preset("good", CUSTOM)
    names = [preset.name for preset in list_presets()]
    assert "good" in names and "broken" not in names
    assert [error.source for error in preset_errors()] == [str(path)]


def test_a_user_file_with_a_shipped_name_is_ignored() -> None:
    _write_user_preset("fmnist_exp1", "epochs = 99\n")
    matches = [preset for preset in list_presets() if preset.name == "fmnist_exp1"]
    assert len(matches) == 1 and matches[0].shipped
    assert load_preset("fmnist_exp1").config.epochs == 10


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(UnknownPresetError) as caught:
        load_preset("fmnist_exp55")
    assert str(caught.value).startswith("unknown preset 'fmnist_exp55'; did you mean fmnist_exp5")
    assert "fmnist_exp5" in caught.value.suggestions


def test_unknown_name_with_nothing_close_says_only_unknown() -> None:
    with pytest.raises(UnknownPresetError, match=r"^unknown preset 'zzzz'$"):
        load_preset("zzzz")


def test_load_by_path_reads_any_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text(preset_to_toml(CUSTOM), encoding="utf-8")
    assert load_preset(str(path)) == Preset(name="elsewhere", path=path, config=CUSTOM, shipped=False)


def test_load_by_path_of_a_shipped_file_marks_it_shipped() -> None:
    assert load_preset(str(SHIPPED_PRESETS_DIR / "cifar_exp3.toml")).shipped


def test_load_by_missing_path_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(PresetError, match=re.escape(f"{path}: cannot read")):
        load_preset(str(path))
