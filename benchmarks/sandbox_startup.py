"""What isolation costs each program: start-up overhead of the sandbox, per kind of isolation.

    python benchmarks/sandbox_startup.py --repeats 10

Runs the same two programs through ``run_sandboxed`` under each isolation this machine allows
(the probed one and the weaker ones below it) and without any: an empty Python program (the fixed
cost: namespaces, mounts, the uid drop) and one that imports what a template imports (numpy,
pandas, scikit-learn, LightGBM: the cost that a read-only bind mount could add to file access).
Prints the median wall time per program and the difference to no isolation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from batch_agent.solver.isolation import Isolation, Mechanism, probe_isolation, sandbox_uid
from batch_agent.solver.sandbox import run_sandboxed

PROGRAMS = {
    "empty program": "pass\n",
    "imports a template's libraries": "import numpy, pandas, sklearn.model_selection, lightgbm\n",
}


def _kinds() -> list[Isolation]:
    probed = probe_isolation()
    order: list[Mechanism] = ["bwrap-root", "bwrap-userns", "uid", "none"]
    uid = sandbox_uid()
    kinds = [probed]
    for mechanism in order[order.index(probed.mechanism) + 1 if probed.mechanism in order else len(order):]:
        if mechanism == "bwrap-userns" and probed.mechanism != "bwrap-userns":
            continue  # as root, a user namespace maps the program to root outside: never used
        kinds.append(Isolation(mechanism, uid=uid if mechanism == "uid" else None))
    return kinds


def _median_seconds(code: str, isolation: Isolation, repeats: int) -> float:
    times = []
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as folder:
        Path(folder).chmod(0o755)  # under a bare uid drop the program's folder must be reachable
        work = Path(folder) / "run"
        work.mkdir()
        (work / "program.py").write_text(code)
        for _ in range(repeats):
            started = time.perf_counter()
            result = run_sandboxed([sys.executable, "program.py"], workdir=work, time_limit=60,
                                   memory_limit_mb=4000, isolation=isolation)
            times.append(time.perf_counter() - started)
            if not result.ok:
                raise SystemExit(f"{isolation.label}: {result.reason}\n{result.log_tail}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    kinds = _kinds()
    print(f"probed: {kinds[0].mechanism} ({kinds[0].label})")
    print("| program | isolation | median s | overhead vs none, ms |")
    print("| --- | --- | ---: | ---: |")
    for name, code in PROGRAMS.items():
        measured = {kind.mechanism: _median_seconds(code, kind, args.repeats) for kind in kinds}
        for kind in kinds:
            overhead = (measured[kind.mechanism] - measured["none"]) * 1000
            print(f"| {name} | {kind.mechanism}: {kind.label} | {measured[kind.mechanism]:.3f} | {overhead:+.0f} |")


if __name__ == "__main__":
    main()
