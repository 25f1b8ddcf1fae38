import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from invaders.config import Params

pytestmark = pytest.mark.unit


def test_readme_documents_every_param_with_its_default():
    readme = (REPO / "README.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line.split("|")[2].strip().strip("`")
            for line in readme.splitlines() if line.startswith("| `")}
    for key, value in Params().flat().items():
        assert key in rows, f"README params reference lacks {key}"
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        assert rows[key] == shown, f"README gives {key} = {rows[key]}, the code {shown}"


def test_params_yaml_matches_the_code_defaults():
    """params.yaml spells out the defaults, so the README's table describes what `make repro` runs."""
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


def test_every_bad_input_row_in_the_readme_names_tests_that_exist():
    readme = (REPO / "README.md").read_text()
    table = readme.split("## When something is wrong", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`test_" in line]
    assert len(rows) >= 12
    for row in rows:
        module = None
        for ref in re.findall(r"`(test_\w+\.py)?::(\w+)`", row.split("|")[3]):
            module = ref[0] or module
            found = list((REPO / "tests").glob(f"*/{module}"))  # tests/<layer>/test_*.py
            assert len(found) == 1, module
            assert re.search(rf"^def {ref[1]}\(", found[0].read_text(), re.M), (module, ref[1])


def test_the_experiment_is_marked_as_model_training_new_or_existing(tmp_path, monkeypatch):
    """A new experiment is created with MLflow's kind tag; an existing one without it gets it from the first
    stage that connects; a kind someone chose stays."""
    import mlflow

    from invaders.tracking.store import connect

    monkeypatch.chdir(tmp_path)  # the default store, as a stage outside DVC selects it
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_experiment("old")
    client.create_experiment("chosen", tags={"mlflow.experimentKind": "genai_development"})
    kinds = {name: client.get_experiment(connect(name)).tags.get("mlflow.experimentKind")
             for name in ("new", "old", "chosen")}
    assert kinds == {"new": "custom_model_development", "old": "custom_model_development",
                     "chosen": "genai_development"}
