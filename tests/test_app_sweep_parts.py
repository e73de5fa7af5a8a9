"""The sweep screen's parts that need no screen: the spec form's draft (to a spec's table and TOML,
problems by field) and the sweep child process (its exit, a stop, a kill after the grace period,
and no child left behind when the app dies)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import tomllib
from pathlib import Path

import pytest

from tests.support import wait_for
from tuner_tui.app.spec_draft import SpaceEntry, SpecDraft, problem_text, problems_by_field, spec_toml
from tuner_tui.app.sweep_process import run_sweep_child
from tuner_tui.runs.presets import read_toml
from tuner_tui.sweeps.spec import SpecError, parse_spec, shipped_specs_dir

WAIT_S = 60.0


# --- the spec form's draft ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fmnist_search", "cifar_search"])
def test_a_shipped_spec_goes_through_the_form_unchanged(name):
    data = read_toml(shipped_specs_dir() / f"{name}.toml")
    draft = SpecDraft.from_data(name, data)
    assert draft.to_data() == data
    assert tomllib.loads(spec_toml(name, draft.to_data())) == data


def test_the_drafts_text_becomes_typed_values():
    draft = SpecDraft(
        "layers", base="fmnist_exp5", fixed="device=cpu epochs=3",
        space={
            "hidden": SpaceEntry("choice", choices="64 256,128"),
            "lr": SpaceEntry("uniform", low="0.01", high="0.1", step="0.01"),
            "seed": SpaceEntry("int", low="0", high="4"),
            "reg": SpaceEntry(),
        },
        search={"trials": "12", "sampler": "grid", "objective": ""},
    )
    assert draft.to_data() == {
        "base": "fmnist_exp5",
        "config": {"device": "cpu", "epochs": 3},
        "space": {
            "hidden": {"choice": [64, [256, 128]]},
            "lr": {"uniform": [0.01, 0.1], "step": 0.01},
            "seed": {"int": [0, 4]},
        },
        "search": {"trials": 12, "sampler": "grid"},
    }
    spec = parse_spec(draft.to_data(), source="layers.toml", name="layers")
    assert spec.space["hidden"].values == (64, [256, 128])


def test_each_problem_goes_to_its_field_without_the_fields_own_key():
    draft = SpecDraft(
        "bad name", base="nope", space={"lr": SpaceEntry("log_uniform", low="0", high="x")},
        search={"epochs": "abc", "pruner": "never"},
    )
    with pytest.raises(SpecError) as caught:
        parse_spec(draft.to_data(), source="/specs/bad.toml", name=draft.name)
    grouped = problems_by_field(caught.value.problems, "/specs/bad.toml")
    assert set(grouped) == {"name", "base", "lr", "search.epochs", "search.pruner"}
    assert [problem_text(p) for p in grouped["search.epochs"]] == ["must be a whole number in [1, 1000], got 'abc'"]
    assert problem_text(grouped["lr"][0]).startswith("log_uniform: must be [low, high]")


def test_a_spec_with_no_field_searched_is_a_problem_of_the_whole_spec():
    with pytest.raises(SpecError) as caught:
        parse_spec(SpecDraft("empty").to_data(), source="e.toml", name="empty")
    assert list(problems_by_field(caught.value.problems, "e.toml")) == ["general"]


# --- the sweep child ----------------------------------------------------------------------------


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def test_a_childs_exit_code_and_its_error_lines_are_kept():
    child = python("""
        import sys
        print("tuner-tui: error: space.lr: must be [low, high]", file=sys.stderr)
        sys.exit(2)
    """)
    exit = run_sweep_child(child, threading.Event())
    assert (exit.code, exit.stopped, exit.killed) == (2, False, False)
    assert exit.errors == ["space.lr: must be [low, high]"]


def test_a_stop_sends_sigterm_and_the_child_ends_as_it_chooses(tmp_path: Path):
    started = tmp_path / "started"
    child = python("""
        import signal, sys, time, pathlib
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        pathlib.Path(sys.argv[1]).touch()
        time.sleep(600)
    """, str(started))
    cancel = threading.Event()
    threading.Thread(target=lambda: (wait_for(started.exists, WAIT_S, "the child"), cancel.set()), daemon=True).start()
    exit = run_sweep_child(child, cancel, grace_s=WAIT_S)
    assert (exit.code, exit.stopped, exit.killed) == (143, True, False)


def test_a_child_that_ignores_the_stop_is_killed_after_the_grace_period(tmp_path: Path):
    started = tmp_path / "started"
    child = python("""
        import signal, sys, time, pathlib
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path(sys.argv[1]).touch()
        time.sleep(600)
    """, str(started))
    cancel = threading.Event()
    threading.Thread(target=lambda: (wait_for(started.exists, WAIT_S, "the child"), cancel.set()), daemon=True).start()
    exit = run_sweep_child(child, cancel, grace_s=0.5)
    assert exit.killed and exit.code == -signal.SIGKILL


def gone(pid: int) -> bool:
    """Whether process `pid` has ended (a zombie waiting for its reaper counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def test_no_sweep_child_outlives_an_app_killed_with_sigkill(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    sleeper = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)"
    app = subprocess.Popen(python("""
        import sys, threading
        from tuner_tui.app.sweep_process import run_sweep_child
        run_sweep_child([sys.executable, "-c", sys.argv[1], sys.argv[2]], threading.Event())
    """, sleeper, str(pid_file)))
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), WAIT_S, "the sweep child")
        child = int(pid_file.read_text())
        app.send_signal(signal.SIGKILL)
        app.wait(timeout=WAIT_S)
        wait_for(lambda: gone(child), WAIT_S, "the orphaned child to be stopped")
    finally:
        if pid_file.exists() and pid_file.read_text().strip() and not gone(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
