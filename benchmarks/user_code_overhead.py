"""What running your own training function through tuner-tui costs, against calling it directly.

    python benchmarks/user_code_overhead.py            # 5 rounds
    python benchmarks/user_code_overhead.py --rounds 9

The function does a fixed amount of work and reports R times (R = 1 and R = 1000). Directly, it is
called in this process with a `Run` that only keeps the reports. Through tuner-tui it runs as
`--no-ui` runs it: in its child process, each report recorded in a real SQLite store (committed at
once) and answered with a verdict. Each round runs both ways back to back, so a busy moment hits a
round, not one side; the medians are printed with their ratio. From the two report counts:
the fixed cost per run (the child process and its imports, the store's rows) and the cost per report.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner_tui.runs.store import ResultsStore
from tuner_tui.usercode.config import user_config
from tuner_tui.usercode.model_file import load_model_file
from tuner_tui.usercode.runner import run_user_code

WORK_S = 0.2  # what the function itself does, per run

MODEL = """
train = "bench.py:train"
[fields]
reports = { default = 1, min = 1, max = 100000 }
[metrics]
value = "maximize"
"""
CODE = f"""
import time

def train(config, run):
    reports = config["reports"]
    for epoch in range(1, reports + 1):
        deadline = time.perf_counter() + {WORK_S} / reports  # the same work after every report
        while time.perf_counter() < deadline:
            pass
        run.report(epoch, value=epoch / reports, loss=1.0 / epoch)
    return {{"value": 1.0}}
"""


class DirectRun:
    """The least a `Run` can be: it keeps the reports."""

    def __init__(self, config: Mapping[str, object]) -> None:
        self.config = config
        self.device = "cpu"
        self.data_root = None
        self.reports: list[tuple[int, dict[str, float]]] = []

    def report(self, epoch: int, **metrics: float) -> None:
        self.reports.append((epoch, metrics))

    def log(self, text: str) -> None:
        pass


def direct(folder: Path, reports: int) -> float:
    namespace: dict[str, object] = {}
    exec(compile(CODE, str(folder / "bench.py"), "exec"), namespace)
    train = namespace["train"]
    start = time.perf_counter()
    train({"reports": reports}, DirectRun({"reports": reports}))  # type: ignore[operator]
    return time.perf_counter() - start


def through_tuner_tui(folder: Path, store: ResultsStore, reports: int) -> float:
    model = load_model_file(folder / "bench.toml")
    config = user_config(model, {"reports": reports})
    start = time.perf_counter()
    outcome = run_user_code(config, store, lambda event: None, cancel=threading.Event())
    elapsed = time.perf_counter() - start
    assert outcome.finished.status.value == "completed", outcome.finished.message
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        (folder / "bench.toml").write_text(MODEL)
        (folder / "bench.py").write_text(CODE)
        with ResultsStore(folder / "runs.sqlite3") as store:
            through_tuner_tui(folder, store, 1)  # warm the page cache: the first child's imports read from disk
            results: dict[int, tuple[list[float], list[float]]] = {1: ([], []), 1000: ([], [])}
            for _ in range(args.rounds):
                for reports, (plain, ours) in results.items():
                    plain.append(direct(folder, reports))
                    ours.append(through_tuner_tui(folder, store, reports))
    print(f"the function's own work: {WORK_S * 1e3:.0f} ms a run; medians of {args.rounds} rounds")
    print(f"{'reports':>8} {'direct':>10} {'tuner-tui':>10} {'ratio':>7} {'overhead':>10}")
    overheads = {}
    for reports, (plain, ours) in results.items():
        d, t = statistics.median(plain), statistics.median(ours)
        overheads[reports] = t - d
        print(f"{reports:>8} {d * 1e3:>8.0f} ms {t * 1e3:>8.0f} ms {t / d:>6.2f}x {(t - d) * 1e3:>7.0f} ms")
    per_report = (overheads[1000] - overheads[1]) / 999
    print(f"per run (child process, imports, rows): {(overheads[1] - per_report) * 1e3:.0f} ms; "
          f"per report (a committed row and a verdict): {per_report * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
