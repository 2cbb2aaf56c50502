"""The times the README states, measured on this machine: `make timings` (outputs/timings.json).

    python scripts/timings.py [--steps demo test-fast test install] [--out outputs/timings.json]

demo:      `python -m pathlab.train experiment=demo` (what `make demo` runs after set-up), wall
           time from process start to exit, and its test ACC with and without TTA
test-fast: `pytest -m "not slow"` (make test-fast), wall time and the pass/fail counts
test:      the whole suite (make test)
install:   a fresh venv with torch and `pip install -e .[dev]` in a temporary folder (make
           install; pip's cache makes a second install faster), wall time and the venv's size
Each step records the machine (CPU model, cores, memory) and the load average before it: on a
shared machine the load says how much of the time was other people's work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("demo", "test-fast", "test", "install")


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.+)", text).group(1).strip()
    except (OSError, AttributeError):
        pass
    memory = None
    try:
        kb = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text()).group(1)
        memory = round(int(kb) / 2**20, 1)
    except (OSError, AttributeError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "python": sys.version.split()[0],
    }


def timed(
    cmd: list[str], cwd: Path = REPO, env: dict[str, str] | None = None
) -> tuple[float, str, int]:
    started = time.perf_counter()
    result = subprocess.run(
        cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    return round(time.perf_counter() - started, 1), result.stdout + result.stderr, result.returncode


def demo(python: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "demo"
        # PATHLAB_CACHE_DIR stays as it is: a first demo also draws the synthetic set (a few s)
        wall, output, rc = timed(
            [python, "-m", "pathlab.train", "experiment=demo", f"hydra.run.dir={run_dir}"]
        )
        out: dict[str, object] = {"wall_s": wall, "returncode": rc}
        summary = run_dir / "metrics.json"
        if summary.is_file():
            m = json.loads(summary.read_text())["metrics"]
            out |= {"test_acc": m.get("test/acc"), "test_acc_no_tta": m.get("test/acc_no_tta")}
        else:
            out["output_tail"] = output[-2000:]
    return out


def pytest_run(python: str, fast: bool) -> dict[str, object]:
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"] + (
        ["-m", "not slow"] if fast else []
    )
    wall, output, rc = timed(cmd)
    tail = output.strip().splitlines()[-1] if output.strip() else ""
    return {"wall_s": wall, "returncode": rc, "result": tail}


def install() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        make = shutil.which("make") or "make"
        wall, output, rc = timed([make, "install", f"VENV={venv}"])
        size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file()) if venv.exists() else 0
        out = {"wall_s": wall, "returncode": rc, "venv_gb": round(size / 1e9, 2)}
        if rc:
            out["output_tail"] = output[-2000:]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/timings.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=["demo", "test-fast"])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "timings.json")
    args = parser.parse_args(argv)
    python = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").is_dir() else sys.executable
    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    record["machine"] = machine()
    for step in args.steps:
        load = os.getloadavg()[0]
        print(f"[{time.strftime('%H:%M:%S')}] {step} (load average {load:.1f}) ...", flush=True)
        if step == "demo":
            result = demo(python)
        elif step == "install":
            result = install()
        else:
            result = pytest_run(python, fast=step == "test-fast")
        result |= {"load_before": round(load, 1), "when": time.strftime("%Y-%m-%d %H:%M")}
        record[step] = result
        print(f"    {json.dumps(result)}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
