"""What a program that takes every core costs the program in the other training slot, and what pinning saves.

    python benchmarks/slot_cores.py                 # 5 repeats of each arrangement
    python benchmarks/slot_cores.py --repeats 3

With two training slots (small tables, two cores) a template trains LightGBM on one
thread. A model-written program beside it may use a library that takes every core by
default (scikit-learn's histogram gradient boosting does). Three arrangements, each
run through the product's sandbox (``run_sandboxed``):

* ``alone``: the template-like program with nothing beside it;
* ``beside, shared``: the same while a greedy program trains in the other slot, both
  free to run on every core (the solver before slots had cores of their own);
* ``beside, pinned``: the same, each program given its slot's cores (``slot_cpus``):
  the mask it starts with and as many threads in OMP_NUM_THREADS and its kin.

The template-like program: 5-fold LightGBM, one thread, 300 rounds on 5,000 rows × 20
features, timed inside the program (the fit alone). The greedy one: histogram gradient
boosting with its default threads, fitted again and again until the template is done.
Needs at least two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batch_agent.solver.sandbox import run_sandboxed  # noqa: E402
from batch_agent.solver.solve import slot_cpus  # noqa: E402

TEMPLATE = """
import json, time
import numpy as np
import lightgbm as lgb
from sklearn.model_selection import KFold
rng = np.random.default_rng(0)
X = rng.normal(size=(5000, 20))
y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(size=5000) > 0).astype(int)
started = time.perf_counter()
for fit, _ in KFold(5, shuffle=True, random_state=0).split(X):
    lgb.LGBMClassifier(n_estimators=300, num_threads=1, verbose=-1).fit(X[fit], y[fit])
print(json.dumps({"fit_seconds": time.perf_counter() - started}))
"""

GREEDY = """
import os, time
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
rng = np.random.default_rng(1)
X = rng.normal(size=(20000, 30))
y = (X[:, 0] + rng.normal(size=20000) > 0).astype(int)
fits = 0
while not os.path.exists("stop"):
    HistGradientBoostingClassifier(max_iter=100, early_stopping=False).fit(X, y)
    fits += 1
print(fits)
"""


def _write(folder: Path, code: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "program.py").write_text(code)
    return [sys.executable, "program.py"]


def run_once(root: Path, arrangement: str) -> float:
    """The template-like program's fit seconds in one arrangement."""
    pinned = arrangement == "beside, pinned"
    greedy_dir = root / "greedy"
    greedy_thread = None
    if arrangement != "alone":
        argv = _write(greedy_dir, GREEDY)
        greedy_thread = threading.Thread(target=run_sandboxed, args=(argv,), kwargs={
            "workdir": greedy_dir, "time_limit": 300, "memory_limit_mb": 4096,
            "cpus": slot_cpus(1, 2) if pinned else None}, daemon=True)
        greedy_thread.start()
        time.sleep(3.0)  # past its imports: training when the template starts
    template_dir = root / "template"
    result = run_sandboxed(_write(template_dir, TEMPLATE), workdir=template_dir, time_limit=300,
                           memory_limit_mb=4096, cpus=slot_cpus(0, 2) if pinned else None)
    if greedy_thread is not None:
        # The greedy program's folder belongs to the sandbox while it runs; a file there tells it to stop.
        (greedy_dir / "stop").touch()
        greedy_thread.join()
    if not result.ok:
        raise SystemExit(f"the template-like program failed: {result.reason}\n{result.log_tail}")
    return float(json.loads(result.log_tail.strip().splitlines()[-1])["fit_seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        print("needs at least two cores", file=sys.stderr)
        return 1
    arrangements = ("alone", "beside, shared", "beside, pinned")
    seconds: dict[str, list[float]] = {a: [] for a in arrangements}
    print(f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="slot-cores-") as tmp:
        # Arrangements in turn within each repeat, so a slow spell of the machine falls on all three.
        for repeat in range(args.repeats):
            for arrangement in arrangements:
                folder = Path(tmp) / f"{repeat}-{arrangement.replace(', ', '-')}"
                seconds[arrangement].append(run_once(folder, arrangement))
                print(f"repeat {repeat + 1} {arrangement}: {seconds[arrangement][-1]:.2f} s", file=sys.stderr)
    print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    alone = statistics.median(seconds["alone"])
    print("| arrangement | template fit, median (s) | low–high (s) | against alone |")
    print("|---|---|---|---|")
    for arrangement in arrangements:
        values = seconds[arrangement]
        median = statistics.median(values)
        print(f"| {arrangement} | {median:.2f} | {min(values):.2f}–{max(values):.2f} | {median / alone:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
