"""Sweep files by the thousand (tests/fuzz.py): a params file's kinds of damage, plus bad seeds, grids and
random spaces, and grids that expand to invalid combinations or to millions of settings. Each is accepted
(every trial's params valid) or refused in one line, before Ray starts; found cases are kept below."""

import math
import shutil

import pytest
from conftest import REPO
from fuzz import cases, check, failed, sweep_documents
from hypothesis import given

from invaders.config import Params
from invaders.errors import UserError
from invaders.sweep.spec import MAX_TRIALS, SweepError, load

pytestmark = pytest.mark.unit


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copytree(REPO / "presets", tmp_path / "presets")
    (tmp_path / "bad-params.yaml").write_text("agent: {gamma: 2}\n")
    (tmp_path / "binary-params.yaml").write_bytes(b"\x80\x81 binary")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_sweep_files_are_accepted_or_refused_in_one_line(project):
    path = project / "sweep.yaml"

    @cases(150)
    @given(sweep_documents("presets/smoke.yaml"))
    def one(document: bytes):
        path.write_bytes(document)
        result = check("sweep", load, path, describe=lambda: repr(document[:300]))
        if isinstance(result, tuple):  # accepted: what the driver will use is usable
            sweep, trials = result
            assert trials and len(trials) <= MAX_TRIALS and trials[0].setting == "base"
            assert all(Params.model_validate(t.params).seed == t.seed for t in trials)
            assert sweep.resources.memory_gb is None or math.isfinite(sweep.resources.memory_gb)

    one()
    failed("sweep")


def sweep_file(project, body: str) -> str:
    (project / "s.yaml").write_text("name: x\nparams: presets/smoke.yaml\nseeds: [0]\n" + body)
    with pytest.raises(SweepError) as err:
        load(project / "s.yaml")
    message = str(err.value)
    assert message.splitlines() == [message] and len(message) < 400, message
    return message


# Found by the fuzzing: each was a traceback, a hang or a line break before it was one line.
@pytest.mark.parametrize("body, says", [
    ("random: {samples: 2, space: {agent.gamma: {uniform: [0, .inf]}}}\n",
     "random.space.agent.gamma: low and high must be finite numbers (got [0.0, inf])"),
    ("random: {samples: 2, space: {agent.gamma: {uniform: [-1.0e+308, 1.0e+308]}}}\n",
     "random.space.agent.gamma: high - low must be a finite number"),
    ("random: {samples: 2, space: {agent.gamma: {loguniform: [1.0e-10, .inf]}}}\n", "random.space.agent.gamma: low and high must be finite"),
    ("random: {samples: 2, space: {agent.batch_size: {randint: [0, 99999999999999999999999]}}}\n",
     "random.space.agent.batch_size: randint needs 64-bit integers"),
    ("resources: {memory_gb: .inf}\n", "resources.memory_gb: Input should be a finite number"),
    ("grid: {" + ", ".join(f"{k}: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]" for k in (
        "agent.batch_size", "agent.n_step", "agent.target_update", "agent.train_interval", "train.log_every",
        "train.checkpoint_every", "env.noop_max", "baseline.episodes", "evaluate.episodes")) + "}\n",
     "up to 1000000001 settings × 1 seeds; a sweep runs at most 10000 trials"),
    ("grid: {env.id: [\"ALE/Pong\\nv5\"]}\n", "setting env.id='ALE/Pong\\nv5', seed 0: env.id: 'ALE/Pong\\nv5' is not"),
    ("grid: {\"agent.\\ngamma\": [1]}\n", "grid: 'agent.\\ngamma': unknown params key"),
    ("base: {agent.learnin_rate: 0.1}\n", "base: agent.learnin_rate: unknown params key"),
    ("base: {seed: 3}\n", "base: seed: seeds are listed under `seeds`"),
    ("base: {agent.warmup_steps: 500}\n", "base: agent.warmup_steps (500) must be less than train.steps (300)"),
    ("base: {agent.head: scalar, agent.augment: crop}\n", "base: agent.augment: got 'crop', allowed: 'none' or 'shift'"),
])
def test_bad_random_spaces_grids_and_resources_are_one_line(project, body, says):
    message = sweep_file(project, body)
    assert message.startswith(f"{project / 's.yaml'}: {says}"), message


def test_seeds_by_the_ten_thousand_are_refused_before_any_trial_is_made(project):
    seeds = ", ".join(map(str, range(20_000)))
    (project / "s.yaml").write_text(f"name: x\nparams: presets/smoke.yaml\nseeds: [{seeds}]\n")
    with pytest.raises(SweepError, match=r"up to 1 settings × 20000 seeds; a sweep runs at most 10000 trials"):
        load(project / "s.yaml")


def test_a_base_params_file_of_any_yaml_type_and_a_bad_params_path(project):
    smoke = (project / "presets" / "smoke.yaml").read_text()
    (project / "bytes.yaml").write_text(smoke.replace("id: ALE/SpaceInvaders-v5", "id: !!binary QUxFL1NwYWNlSW52YWRlcnMtdjU="))
    (project / "s.yaml").write_text("name: x\nparams: bytes.yaml\nseeds: [0]\ngrid: {agent.gamma: [0.9]}\n")
    sweep, trials = load(project / "s.yaml")  # pydantic reads the bytes as the id: accepted, as the stages do
    assert [t.params["env"]["id"] for t in trials] == ["ALE/SpaceInvaders-v5"] * 2
    for params, says in (("/", "/: not readable (Is a directory)"), ("binary-params.yaml", "binary-params.yaml: not utf-8 text (invalid start byte at byte 0)")):
        (project / "s.yaml").write_text(f"name: x\nparams: {params}\nseeds: [0]\n")
        with pytest.raises(UserError) as err:  # the base params file's own line
            load(project / "s.yaml")
        assert str(err.value).startswith(says), str(err.value)
