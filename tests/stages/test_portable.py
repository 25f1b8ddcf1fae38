"""`reproducibility.mode: portable`: the smoke pipeline's outputs are the golden ones, on any CPU and core count.

The golden digests in `tests/golden/smoke-portable.json` were produced once (see `golden_machine` in the file)
and are never regenerated to make a failure pass: a failure on another CPU is a finding (README, Reproducibility).
"""

import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, make_project, run
from test_reproducibility import digests

from invaders import reproducibility

pytestmark = pytest.mark.e2e

GOLDEN = REPO / "tests" / "golden" / "smoke-portable.json"
# In pipeline order, so a failure names the first output that differs (the later ones follow from it).
OUTPUTS = ["data/baseline/episodes.csv", "data/model/model.keras", "data/train/last.keras", "data/train/model.keras",
           "data/train/history.csv", "data/train/validation.csv", "data/train/metrics.json", "data/eval/episodes.csv",
           "data/eval/metrics.json"]
TRAIN_AND_EVAL = [o for o in OUTPUTS if o.startswith(("data/train/", "data/eval/"))]


def smoke_params() -> dict:
    params = yaml.safe_load((REPO / "presets" / "smoke.yaml").read_text())
    assert params["reproducibility"]["mode"] == "portable"
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("portable")
    make_project(root, smoke_params())
    return root, digests(root, OUTPUTS)


def machine() -> str:
    return f"{reproducibility.cpu_name()} with {' '.join(reproducibility.cpu_flags())}, {os.cpu_count()} cores"


def test_smoke_outputs_are_the_golden_ones(project):
    root, got = project
    if os.environ.get("INVADERS_WRITE_GOLDEN"):  # once, by hand: never to make a failure pass
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps({"golden_machine": machine(), "sha256": got}, indent=2) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert list(golden["sha256"]) == OUTPUTS
    differing = [name for name in OUTPUTS if got[name] != golden["sha256"][name]]
    assert not differing, (
        f"portable outputs differ from the golden ones (made on {golden['golden_machine']}) on {machine()}:"
        f" first {differing[0]}, then {differing[1:]}")


def test_the_outputs_do_not_depend_on_the_core_count_or_an_isa_cap_from_outside(project):
    """Training and evaluation again on one core (TensorFlow's default would be 1 thread, not 2) with
    oneDNN told to use every instruction set this CPU has (AVX-512 here): portable mode overrides both."""
    root, first = project
    assert os.cpu_count() >= 2, "needs a machine with at least 2 cores"
    one_core = ["taskset", "-c", "0", sys.executable]
    for stage in ("train", "evaluate"):
        run([*one_core, f"pipeline/{stage}.py"], root, ONEDNN_MAX_CPU_ISA="ALL", XLA_FLAGS="")
    assert digests(root, TRAIN_AND_EVAL) == {k: first[k] for k in TRAIN_AND_EVAL}
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    latest = mlflow.search_runs(experiment_names=["invaders"], filter_string="tags.stage = 'train'",
                                output_format="list", order_by=["attributes.start_time DESC"])[0]
    tags = latest.data.tags
    assert (tags["repro.mode"], tags["repro.cores"], tags["repro.intra_op_threads"], tags["repro.onednn_max_cpu_isa"],
            tags["repro.xla_flags"]) == ("portable", "1", "2", "AVX2", "--xla_cpu_max_isa=AVX2")
    assert tags["repro.cpu"] == reproducibility.cpu_name() and "avx2" in tags["repro.cpu_flags"].split()
    assert (tags["eval.repro.mode"], tags["eval.repro.intra_op_threads"]) == ("portable", "1")
    # The MLflow model's requirements are given from the installed (locked) versions, not inferred by
    # MLflow in a second Python process that imports TensorFlow again.
    from importlib.metadata import version

    requirements = Path(mlflow.artifacts.download_artifacts(run_id=latest.info.run_id,
                                                            artifact_path="model/requirements.txt",
                                                            dst_path=str(root / "check"))).read_text().split()
    assert {f"tensorflow=={version('tensorflow')}", f"tf-keras=={version('tf-keras')}"} <= set(requirements)


APPLY = """
import json, os, sys
import invaders, tensorflow as tf
from invaders import reproducibility
from invaders.config import Params, ReproducibilityConfig
params = Params(reproducibility=ReproducibilityConfig(mode=sys.argv[1], threads=3))
if sys.argv[2] == "late":
    tf.constant(1.0) + 1
try:
    reproducibility.apply(params)
except RuntimeError as exc:
    print(json.dumps({"error": str(exc)})); sys.exit()
tf.constant(1.0) + 1
try:
    reproducibility.apply(params, playing=True)
    again = "accepted"
except RuntimeError:
    again = "refused"
print(json.dumps({"intra": tf.config.threading.get_intra_op_parallelism_threads(),
                  "inter": tf.config.threading.get_inter_op_parallelism_threads(),
                  "isa": os.environ.get("ONEDNN_MAX_CPU_ISA"), "xla": os.environ.get("XLA_FLAGS"), "again": again}))
"""


@pytest.mark.parametrize("mode, when, expected", [
    ("portable", "early", {"intra": 3, "inter": 3, "isa": "AVX2", "xla": "--xla_cpu_enable_fast_math=false --xla_cpu_max_isa=AVX2",
                           "again": "refused"}),
    ("native", "early", {"intra": 0, "inter": 0, "isa": "AVX512_CORE", "xla": "--xla_cpu_enable_fast_math=false", "again": "refused"}),
    ("portable", "late", {"error": "reproducibility.apply() must be called before TensorFlow runs its first op"}),
])
def test_apply_sets_the_caps_and_threads_before_the_first_op_or_refuses(mode, when, expected):
    """What `apply` does to the process: portable overrides an outer cap and keeps other XLA flags; native leaves
    them and TensorFlow's default threads (0: the core count) alone; after TensorFlow's first op it refuses, as it
    does a second call with other settings (here: playing)."""
    out = run([sys.executable, "-c", APPLY, mode, when], REPO, ONEDNN_MAX_CPU_ISA="AVX512_CORE",
              XLA_FLAGS="--xla_cpu_enable_fast_math=false")
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected
