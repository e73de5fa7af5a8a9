"""One read of a sweep's study decides a worker's pass: finished trials, trials in flight, stale holders
and each worker's share, on a real Optuna study in SQLite."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tests.support import write_spec
from tuner_tui.runs.lease import LEASE_SECONDS
from tuner_tui.sweeps.spec import load_spec
from tuner_tui.sweeps.study import StudyRead, holder_of, open_study


def ended_pid() -> int:
    """The pid of a process of this host that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    return child.pid


def test_a_read_counts_finished_and_live_trials_and_finds_the_stale_ones(tmp_path: Path, isolated) -> None:
    spec = load_spec(str(write_spec(tmp_path, trials=10)))
    sweep = open_study(spec, "read", f"sqlite:///{tmp_path / 'study.db'}", budget=10, create=True)
    study = sweep.study
    now = time.time()
    for state in (TrialState.COMPLETE, TrialState.PRUNED):
        trial = study.ask()
        study.tell(trial, 0.5 if state is TrialState.COMPLETE else None, state=state)
    ours, gone, expired, unheld = (study.ask() for _ in range(4))
    for trial in (ours, gone, expired, unheld):
        sweep.params_of(trial)
    sweep.hold(ours, "worker 0", now + LEASE_SECONDS)
    sweep.hold(gone, "worker 1", now + LEASE_SECONDS)
    sweep.hold(expired, "worker 2", now - 1)
    dead = ended_pid()
    study._storage.set_trial_system_attr(  # the holder of `gone` is a process of this host that ended
        gone._trial_id, "tuner_tui.holder", {**study.trials[gone.number].system_attrs["tuner_tui.holder"], "pid": dead}
    )

    read = sweep.read(now)
    assert isinstance(read, StudyRead) and read.budget == 10
    assert read.finished() == 2
    assert read.in_flight() == 2  # ours, and the one asked but not yet held
    stale = dict((t.number, why) for t, why in read.stale())
    assert set(stale) == {gone.number, expired.number}
    assert stale[gone.number] == f"process {dead} ended before it finished"
    assert "lease expired" in stale[expired.number]
    assert read.share("worker 0") == 8  # 8 trials left, one live holder: this worker
    assert read.share("worker 9") == 4  # another worker and worker 0 split them
    holder = holder_of(study.trials[ours.number])
    assert holder is not None and holder.worker == "worker 0" and holder.gone(now) is None
    assert holder_of(study.trials[unheld.number]) is None

    assert sorted(sweep.recover_stale(read)) == sorted(stale)
    after = sweep.read(time.time())
    assert after.stale() == [] and after.in_flight() == 2
    states = {t.number: t.state for t in after.trials}
    assert states[gone.number] is states[expired.number] is TrialState.FAIL
    waiting = {t.user_attrs.get("requeued_from") for t in after.trials if t.state is TrialState.WAITING}
    assert waiting == set(stale)  # their parameters are asked again


def test_a_holder_attribute_not_written_by_tuner_tui_is_no_holder(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    trial = study.ask()
    study._storage.set_trial_system_attr(trial._trial_id, "tuner_tui.holder", {"worker": "w"})
    assert holder_of(study.trials[0]) is None


def test_a_trial_held_in_the_older_one_attribute_a_field_form_is_still_held(tmp_path: Path) -> None:
    """A study left running by an older tuner-tui: its stale trial is found, so it is asked again."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    trial = study.ask()
    for key, value in (("worker", "w1"), ("host", "elsewhere"), ("pid", 7), ("lease_expires_at", 100.0)):
        study._storage.set_trial_system_attr(trial._trial_id, f"tuner_tui.{key}", value)
    holder = holder_of(study.trials[0])
    assert holder is not None and holder.worker == "w1" and holder.host == "elsewhere"
    read = StudyRead(study.trials, {}, 1, now=200.0)
    assert [t.number for t, _ in read.stale()] == [0] and read.in_flight() == 0
