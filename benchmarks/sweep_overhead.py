"""What Ray costs a sweep: N tiny trials through `invaders sweep` (a local Ray instance) against the same
trials run by `invaders.sweep.trial.run_trial` in plain processes, as many at a time as there are cores.

Both sides run the same trials (the smoke preset, N seeds of the base setting) with the same code,
each side against its own fresh SQLite tracking store; the difference in wall time is Ray's start-up,
scheduling, checkpoint reporting and result handling. Prints one JSON line.

    python benchmarks/sweep_overhead.py --trials 4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PLAIN = """
import json, sys
from pathlib import Path
from invaders.sweep.spec import load
from invaders.sweep.trial import run_trial
sweep, trials = load(Path("sweeps/bench.yaml"))
trial = next(t for t in trials if t.id == sys.argv[1])
run_trial({"trial": trial.model_dump(), "out": str(Path("data/sweeps/bench/trials").resolve()), "cpus": 1,
           "parent_run_id": sys.argv[2], "sweep": "bench"})
"""


def project(root: Path, trials: int) -> None:
    shutil.copytree(REPO / "presets", root / "presets")
    (root / "sweeps").mkdir()
    (root / "sweeps" / "bench.yaml").write_text(yaml.safe_dump(
        {"name": "bench", "params": "presets/smoke.yaml", "seeds": list(range(trials)), "resources": {"cpus": 1}}))


def env(root: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", "RAY_USAGE_STATS_ENABLED": "0",
            "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def with_ray(root: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["invaders", "sweep", "sweeps/bench.yaml"], cwd=root, env=env(root), check=True,
                   capture_output=True)
    return time.perf_counter() - started


def plain(root: Path, trials: int, workers: int) -> float:
    started = time.perf_counter()
    # A parent run, as the sweep makes one: the child runs need it.
    parent = subprocess.run([sys.executable, "-c", "import mlflow; from invaders.tracking import connect, start_run;"
                             "print(start_run(connect('invaders'), None, 'sweep-bench', {}))"],
                            cwd=root, env=env(root), check=True, capture_output=True, text=True).stdout.split()[-1]

    def one(seed: int) -> None:
        subprocess.run([sys.executable, "-c", PLAIN, f"base-seed{seed}", parent], cwd=root, env=env(root),
                       check=True, capture_output=True)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(trials)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="pairs, in alternating order (a busy machine drifts)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    pairs = []
    for repeat in range(args.repeats):
        times = {}
        for side in (("plain", "ray") if repeat % 2 == 0 else ("ray", "plain")):
            with tempfile.TemporaryDirectory() as root:
                project(Path(root), args.trials)
                times[side] = plain(Path(root), args.trials, cores) if side == "plain" else with_ray(Path(root))
        pairs.append(times)
    plain_s, ray_s = (sum(p[side] for p in pairs) for side in ("plain", "ray"))
    print(json.dumps({"trials": args.trials, "cores": cores, "repeats": args.repeats,
                      "pairs": [{k: round(v, 1) for k, v in p.items()} for p in pairs],
                      "overhead": round(ray_s / plain_s - 1, 3), "load_average_1min": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
