"""Everything that needs a GPU, in one command of under 5 minutes, ending in one table.

    python benchmarks/gpu_check.py [--data-root DIR] [--json PATH]

1. the CUDA tests (tests/test_engine.py and tests/test_packed.py, `-k cuda`): none may fail or skip;
2. the solo fast path on CUDA, its captured CUDA graph against its eager step (steps/s);
3. packs of 1-64 on CUDA against the same runs one after another (model-steps/s; goal: 64 ≥ 20×);
4. GPU memory as NVML reads it for a solo run and for packs of 8 and 32, each in a fresh process,
   against the estimate (goal ±15 %).

Without a CUDA device it stops at once with exit code 2 and says so. Exit code 1 when a test fails or
skips, a step cannot be captured, or a memory estimate is off by more than 15 %; speed goals are
reported, not enforced. Memory runs use Fashion-MNIST from --data-root (or the usual places), or,
when there is none (a GPU node without the data), synthetic data in its exact format and size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MEMORY_TOLERANCE = 0.15
PACK_GOAL = 20.0  # a pack of 64 against sequential, on a GPU (issue 14)
TEST_TIMEOUT_S = 150


@dataclass
class Row:
    check: str
    result: str
    verdict: str  # "PASS", "FAIL" or "info"


def require_cuda() -> None:
    if not torch.cuda.is_available():
        print(
            f"gpu_check: no CUDA device: torch.cuda.is_available() is False (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
            "run this on a GPU node",
            file=sys.stderr,
        )
        raise SystemExit(2)


def cuda_tests() -> Row:
    """The CUDA tests in a subprocess; a skip counts as a failure on a machine that has CUDA."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.xml"
        command = [
            sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "-k", "cuda",
            f"--junitxml={report}", "tests/test_engine.py", "tests/test_packed.py",
        ]
        try:
            done = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, timeout=TEST_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            return Row("CUDA tests", f"did not finish in {TEST_TIMEOUT_S} s", "FAIL")
        if not report.exists():
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            return Row("CUDA tests", f"pytest ran no tests: {tail[0]}", "FAIL")
        suite = ElementTree.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    bad = counts["failures"] + counts["errors"] + counts["skipped"]
    text = f"{passed} passed, {counts['failures'] + counts['errors']} failed, {counts['skipped']} skipped"
    if bad:
        failing = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR", "SKIPPED"))]
        text += "; " + "; ".join(failing[:3])
    return Row("CUDA tests (test_engine, test_packed -k cuda)", text, "FAIL" if bad or not passed else "PASS")


def graph_speed(device: torch.device, seconds: float, rounds: int) -> list[Row]:
    """The solo fast path: captured graph against eager, per workload."""
    import pack_speed

    rows = []
    for workload in pack_speed.WORKLOADS:
        data = pack_speed.synthetic_data(workload, device)
        steppers = {}
        for mode in ("graph", "plan"):
            stepper = pack_speed.solo_stepper(workload, data)
            stepper.backend.step_mode = mode
            steppers[mode] = stepper
        rates, ratios = pack_speed.interleaved(steppers, seconds, rounds, device)
        status = steppers["graph"].backend.graph_status
        verdict = "PASS" if status == "captured" else "FAIL"
        speedup = 1 / ratios["plan"]
        rows.append(Row(
            f"solo step {workload.name}: CUDA graph vs eager",
            f"{rates['graph']:,.0f} vs {rates['plan']:,.0f} steps/s ({speedup:.2f}×); {status}",
            verdict,
        ))
    return rows


def pack_speed_rows(device: torch.device, seconds: float, rounds: int) -> tuple[list[Row], dict]:
    import pack_speed

    rows, figures = [], {}
    for workload in pack_speed.WORKLOADS:
        result = pack_speed.bench_packs(workload, (1, 8, 32, 64), device, seconds, rounds)
        figures[workload.name] = result
        ratios = result["ratios"]
        text = ", ".join(f"{k}: {ratios[f'pack{k}']:.1f}×" for k in (1, 8, 32, 64))
        verdict = "info"
        if workload.name == "F10":
            verdict = "PASS" if ratios["pack64"] >= PACK_GOAL else "MISS"
            text += f" (goal: 64 ≥ {PACK_GOAL:.0f}×)"
        rows.append(Row(f"packs {workload.name} vs sequential", text, verdict))
    return rows, figures


def memory_child(kind: str, data_root: str | None) -> None:
    """One run or pack on CUDA in this fresh process; prints NVML's peak and the estimate (JSON)."""
    from tuner_tui.engine.config import RunConfig
    from tuner_tui.engine.events import Started
    from tuner_tui.engine.pack_runner import execute_pack, prepare_pack
    from tuner_tui.engine.runner import execute_run, prepare_run

    def config(seed: int) -> RunConfig:
        return RunConfig(dataset="fmnist", data_root=data_root, device="cuda", hidden=(256,), batch_size=100,
                         epochs=1, lr=0.01, seed=seed)

    started: list[Started] = []
    if kind == "solo":
        finished = execute_run(prepare_run(config(0)), lambda e: started.append(e) if isinstance(e, Started) else None)
    else:
        k = int(kind.removeprefix("pack"))
        results = execute_pack(
            prepare_pack([config(i) for i in range(k)]),
            lambda e: started.append(e.event) if isinstance(e.event, Started) else None,
        )
        finished = results[0]
    resources = finished.resources
    print(json.dumps({
        "kind": kind, "status": finished.status.value, "estimated": started[0].memory_estimate.total,
        "nvml": resources.gpu_process_memory_bytes, "reserved": resources.cuda_peak_reserved_bytes,
    }))


def ensure_data(data_root: str | None, scratch: Path) -> str | None:
    """The data root for the memory runs: the one given (or None: the usual places) when Fashion-MNIST
    is there, else `scratch` with synthetic files in its format and size."""
    from tests.datafiles import write_idx_dataset
    from tuner_tui.engine.datasets import DatasetError, load_dataset

    try:
        load_dataset("fmnist", data_root, download=False)
        return data_root
    except DatasetError:
        write_idx_dataset(scratch, train=60000, test=10000)
        return str(scratch)


def memory_rows(data_root: str | None) -> list[Row]:
    rows = []
    for kind in ("solo", "pack8", "pack32"):
        root = ["--data-root", data_root] if data_root else []
        done = subprocess.run(
            [sys.executable, __file__, "--memory-child", kind, *root], capture_output=True, text=True, timeout=180,
            check=False,
            cwd=ROOT,
        )
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append(Row(f"memory {kind}: NVML vs estimate", f"failed: {tail}", "FAIL"))
            continue
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        measured, estimated = figures["nvml"], figures["estimated"]
        if not measured:
            rows.append(Row(f"memory {kind}: NVML vs estimate", "NVML gave no process memory", "FAIL"))
            continue
        ratio = estimated / measured
        verdict = "PASS" if abs(ratio - 1) <= MEMORY_TOLERANCE else "FAIL"
        rows.append(Row(
            f"memory {kind}: NVML vs estimate",
            f"{measured / 2**20:,.0f} MiB measured, {estimated / 2**20:,.0f} MiB estimated ({ratio:.2f}; ±15 %)",
            verdict,
        ))
    return rows


def print_table(rows: list[Row], device: torch.device, elapsed: float) -> None:
    name = torch.cuda.get_device_name(device)
    print(f"\ngpu_check on {name} (torch {torch.__version__}, CUDA {torch.version.cuda}), {elapsed:.0f} s")
    width = max(len(row.check) for row in rows)
    for row in rows:
        print(f"  {row.verdict:<5} {row.check:<{width}}  {row.result}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="where Fashion-MNIST is (default: the usual places)")
    parser.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.data_root)
        return 0
    require_cuda()
    start = time.perf_counter()
    device = torch.device("cuda")
    rows = [cuda_tests()]
    rows += graph_speed(device, seconds=0.5, rounds=3)
    packs, figures = pack_speed_rows(device, seconds=0.5, rounds=3)
    rows += packs
    with tempfile.TemporaryDirectory() as scratch:
        rows += memory_rows(ensure_data(args.data_root, Path(scratch)))
    print_table(rows, device, time.perf_counter() - start)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [vars(r) for r in rows], "packs": figures}, indent=2) + "\n")
    return 1 if any(row.verdict == "FAIL" for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
