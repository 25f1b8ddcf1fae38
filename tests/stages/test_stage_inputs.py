import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from invaders.config import Params

pytestmark = pytest.mark.unit


def test_params_yaml_matches_the_code_defaults():
    """params.yaml spells out the defaults, so the params reference (docs/params.md) describes what `make repro` runs."""
    assert Params.model_validate(yaml.safe_load((REPO / "params.yaml").read_text())) == Params()


@pytest.mark.parametrize("stage, first_input", [
    ("train", "data/model/model.keras"), ("evaluate", "data/train/model.keras"),
    ("promote", "data/train/mlflow_run.json"),
])
def test_a_stage_run_before_its_inputs_exist_says_so(tmp_path, stage, first_input):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    result = subprocess.run([sys.executable, str(REPO / "pipeline" / f"{stage}.py")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"error: {first_input}: missing; run the stages before this one (dvc repro)", last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no store, no data
