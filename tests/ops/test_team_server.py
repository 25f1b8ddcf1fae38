"""The team server as a team runs it: `scripts/mlflow-server.sh --local-postgres` (a real PostgreSQL
cluster and a real MLflow server with logins) serving HTTPS with a certificate of a private CA (made by
trustme) that every client trusts through MLFLOW_TRACKING_SERVER_CERT_PATH, users made with `invaders
users add`, the pipeline and the retrain script run by a writer, a reader and an admin, the server
going away mid-run, and a writer's permission revoked mid-run."""

import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
import trustme
import yaml
from conftest import BIN, REPO, TINY, free_port, make_project, merge, ran_stages, run, tool_env

pytestmark = pytest.mark.server

ADMIN_PASSWORD = "admin-secret-8f3c1e"
WRITER, WRITER_PASSWORD = "wanda", "writer-secret-51d0ab"
READER, READER_PASSWORD = "reggie", "reader-secret-c7e92f"
SECRETS = (ADMIN_PASSWORD, WRITER_PASSWORD, READER_PASSWORD)
# Enough episodes a side for the promotion rule (promote.min_episodes 5). The 300-step agent plays near one
# fixed action, which can beat 6 random games (p = 0.0019 on the seeded episodes since 2026-12-02): the
# writer's agent is evaluated at ε = 1, playing at random (p = 0.23), so it stays a challenger, which a
# writer may set; the champion test plays at ε = 0.01 (`evaluate_greedily`).
PARAMS = merge(TINY, {"baseline": {"episodes": 6}, "evaluate": {"episodes": 6, "epsilon": 1.0}})


def evaluate_greedily(project: Path, greedy: bool) -> None:
    """Set the project's evaluate.epsilon to 0.01 (greedy) or back to 1.0."""
    params = project / "params.yaml"
    values = yaml.safe_load(params.read_text())
    values["evaluate"]["epsilon"] = 0.01 if greedy else 1.0
    params.write_text(yaml.safe_dump(values, sort_keys=False))
# Wall-clock metrics differ between any two runs; every other point must be the same.
WALL_CLOCK = ("steps_per_s", "train_duration_seconds", "train_steps_per_s")


def no_secret_in(*texts: str) -> None:
    for text in texts:
        assert not any(secret in text for secret in SECRETS)


class TeamServer:
    """scripts/mlflow-server.sh --local-postgres DIR --tls-cert --tls-key, started and stopped as a user
    would; its certificate is signed by a CA of its own, whose certificate (`ca`) its clients trust."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.uri = f"https://127.0.0.1:{self.port}"
        self.process, self.starts = None, 0
        authority, tls = trustme.CA(), root / "tls"
        tls.mkdir()
        self.ca, self.cert, self.key = tls / "ca.pem", tls / "cert.pem", tls / "key.pem"
        authority.cert_pem.write_to_path(self.ca)
        issued = authority.issue_cert("127.0.0.1", "localhost")
        issued.cert_chain_pems[0].write_to_path(self.cert)
        issued.private_key_pem.write_to_path(self.key)

    def start(self) -> None:
        self.starts += 1
        log = open(self.root / f"server-{self.starts}.log", "w")
        env = {**os.environ, "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD}
        self.process = subprocess.Popen(
            ["bash", str(REPO / "scripts" / "mlflow-server.sh"), "--local-postgres", str(self.root / "pg"),
             "--port", str(self.port), "--workers", "1", "--tls-cert", str(self.cert), "--tls-key", str(self.key)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        trusted = ssl.create_default_context(cafile=self.ca)
        deadline = time.monotonic() + 240  # a loaded 2-core machine can take minutes
        while True:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2, context=trusted)
                return
            except OSError:
                assert self.process.poll() is None, self.log()
                assert time.monotonic() < deadline, "the server did not start\n" + self.log()
                time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C or a service manager would; the script stops MLflow and PostgreSQL."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        left = subprocess.run(["pgrep", "-f", str(self.root / "pg")], capture_output=True, text=True).stdout
        server = subprocess.run(["pgrep", "-f", f"--port {self.port}"], capture_output=True, text=True).stdout
        assert left == "" and server == "", f"processes left behind: {left} {server}"

    def log(self) -> str:
        return "".join(p.read_text() for p in sorted(self.root.glob("server-*.log")))

    def env(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        env = {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_TRACKING_SERVER_CERT_PATH": str(self.ca),
               "MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": ""}
        if user:
            env.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
        return env

    def admin(self) -> dict[str, str]:
        return self.env("admin", ADMIN_PASSWORD)

    def writer(self) -> dict[str, str]:
        return self.env(WRITER, WRITER_PASSWORD)

    def reader(self) -> dict[str, str]:
        return self.env(READER, READER_PASSWORD)

    def client(self, who: dict[str, str]):
        """An MlflowClient as `who` (MLflow reads the login from the environment at each request)."""
        import mlflow

        os.environ.update(who)
        return mlflow.MlflowClient(self.uri)


@pytest.fixture(scope="module")
def server():
    # Not under pytest's tmp dir: its 0700 parents would keep the `postgres` OS user out.
    root = Path(tempfile.mkdtemp(prefix="invaders-team-"))
    root.chmod(0o755)
    team = TeamServer(root)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_SERVER_CERT_PATH",
                                            "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    team.start()
    try:
        assert f"mlflow-server: {team.uri} (artifacts: " in team.log() and "mlflow-server: warning" not in team.log()
        for name, role, password in ((WRITER, "writer", WRITER_PASSWORD), (READER, "reader", READER_PASSWORD)):
            added = subprocess.run([str(BIN / "invaders"), "users", "add", name, "--role", role],
                                   input=password + "\n", capture_output=True, text=True, cwd=REPO,
                                   env={**os.environ, **team.admin()}, timeout=120)
            assert added.returncode == 0, added.stderr
            no_secret_in(added.stdout, added.stderr)
        yield team
    finally:
        team.stop()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    no_secret_in(team.log())
    subprocess.run(["rm", "-rf", str(root)], check=False)


def histories(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
            for key in run.data.metrics if not key.startswith("system/") and key not in WALL_CLOCK}


@pytest.fixture(scope="module")
def writer_project(server, tmp_path_factory):
    """The tiny pipeline through scripts/retrain.sh, run by a writer against the team server."""
    root = tmp_path_factory.mktemp("writer")
    make_project(root, merge(yaml.safe_load((REPO / "params.yaml").read_text()), PARAMS), repro=False)
    done = run(["bash", "scripts/retrain.sh", "--no-gate"], root, **server.writer())
    assert ran_stages(done.stdout) == ["baseline", "build", "train", "evaluate", "promote"]
    no_secret_in(done.stdout, done.stderr)
    return root


def test_a_writer_runs_the_pipeline_and_everything_is_on_the_server(server, writer_project):
    import mlflow

    from invaders.rl.model import load_network

    assert not (writer_project / "mlflow.db").exists() and not (writer_project / "mlruns").exists()
    client = server.client(server.reader())  # a reader browses it all
    experiment = client.get_experiment_by_name("invaders")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = {r.data.tags["stage"]: r for r in client.search_runs([experiment.experiment_id])}
    train = runs["train"]
    assert set(runs) == {"baseline", "train"} and train.info.status == "FINISHED"
    assert train.data.tags["mlflow.user"] and train.data.params["train.steps"] == "300"
    assert train.info.run_id == json.loads((writer_project / "data/train/mlflow_run.json").read_text())["run_id"]
    got = histories(client, train.info.run_id)
    history = (writer_project / "data/train/history.csv").read_text().splitlines()[1:]
    assert [s for s, _ in got["episode_reward"]] == [int(line.split(",")[1]) for line in history]
    assert [s for s, _ in got["val_mean_reward"]] == [100, 200, 300]
    assert got["mean_reward"] == [(1, json.loads((writer_project / "data/eval/metrics.json").read_text())["mean_reward"])]
    # The evaluate stage read the train stage's output hashes back through the server to add its own.
    listing = client.download_artifacts(train.info.run_id, "outputs.sha256", str(writer_project))
    assert {"data/train/model.keras", "data/eval/episodes.csv"} <= {
        line.split("  ", 1)[1] for line in Path(listing).read_text().splitlines()}
    assert train.data.tags["mlflow.note.content"].startswith("- **Score")
    # `invaders ui` (make mlflow-ui) points at the server's own UI instead of serving one.
    shown = run(["invaders", "ui"], writer_project, **server.reader()).stdout
    assert shown == f"MLflow UI: {server.uri}/#/experiments/{experiment.experiment_id}?workflowType=machine_learning\n"
    assert any(k.startswith("system/") for k in train.data.metrics)
    artifacts = server.root / "pg" / "artifacts"  # proxied through the server into its store
    assert list(artifacts.rglob("history.csv")) and list(artifacts.rglob("episode.mp4"))

    decision = json.loads((writer_project / "data/promote/decision.json").read_text())
    assert decision["alias"] == "challenger" and decision["alias_refused"] is None  # a writer may set that one
    version = client.get_model_version_by_alias("invaders-dqn", "challenger")
    assert version.run_id == train.info.run_id
    mlflow.set_tracking_uri(server.uri)  # models:/ URIs resolve against the global one
    try:
        registered = mlflow.tensorflow.load_model("models:/invaders-dqn@challenger")
    finally:
        mlflow.set_tracking_uri("")
    x = np.random.default_rng(0).integers(0, 256, (4, 4, 84, 84), dtype=np.uint8)
    local = load_network(writer_project / "data/train/model.keras")
    np.testing.assert_allclose(registered.predict_on_batch(x), local.predict_on_batch(x), rtol=1e-6)


def always_right_fire(path: Path) -> None:
    """Turn the trained (dueling) network at `path` into one that always picks RIGHTFIRE (action 4),
    which clearly beats random play: the advantage head ignores its input and favours that action."""
    from invaders.rl.model import load_network, save_network

    model = load_network(path)
    head = model.get_layer("advantage")
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.eye(len(bias), dtype=bias.dtype)[4]])
    save_network(model, path)


def test_only_an_admin_crowns_the_champion(server, writer_project):
    """The champion path end to end. A writer's agent that earns `champion`: the decision is recorded,
    the alias is not moved, and retrain.sh says so with exit 3; the same promote stage run by the
    admin moves it; then retrain.sh passes its gate (exit 0), a reader plays `@champion`, and the
    champion re-evaluated with its trained network (played at random: it does not beat random) loses the alias."""
    trained = (writer_project / "data/train/model.keras").read_bytes()
    always_right_fire(writer_project / "data/train/model.keras")
    run(["dvc", "commit", "-f", "train"], writer_project)  # as if train had made it
    evaluate_greedily(writer_project, True)
    refused = run(["bash", "scripts/retrain.sh"], writer_project, check=False, **server.writer())
    assert refused.returncode == 3, refused.stderr[-2000:]
    assert ran_stages(refused.stdout) == ["evaluate", "promote"]
    assert refused.stderr.strip().splitlines()[-1].startswith("registry: the alias was not moved: moving the"
                                                              " 'champion' alias of registered model 'invaders-dqn'")
    assert "**The registry did not move the `champion` alias**" in refused.stdout
    decision = json.loads((writer_project / "data/promote/decision.json").read_text())
    assert decision["alias"] == "champion" and decision["beats_baseline"] and "MANAGE" in decision["alias_refused"]
    client = server.client(server.reader())
    note = client.get_run(decision["run_id"]).data.tags["mlflow.note.content"]
    assert "- **champion**, version" in note and "**the registry did not move the alias**: moving the" in note
    with pytest.raises(Exception, match="not found|RESOURCE_DOES_NOT_EXIST|INVALID_PARAMETER_VALUE"):
        client.get_model_version_by_alias("invaders-dqn", "champion")

    crowned = run(["python", "pipeline/promote.py"], writer_project, **server.admin())
    assert "is champion" in crowned.stdout and "did not move" not in crowned.stdout
    version = server.client(server.reader()).get_model_version_by_alias("invaders-dqn", "champion")
    assert version.version == decision["version"]
    no_secret_in(refused.stdout, refused.stderr, crowned.stdout, crowned.stderr)

    passed = run(["bash", "scripts/retrain.sh"], writer_project, **server.admin())  # exit 0: gate passed
    assert "Gate: passed, the agent beats the random baseline." in passed.stdout
    played = run(["invaders", "play", "--model", "models:/invaders-dqn@champion"], writer_project, **server.reader())
    assert played.stdout.splitlines()[-1].startswith("mean ") and "over 1 episodes" in played.stdout

    (writer_project / "data/train/model.keras").write_bytes(trained)
    run(["dvc", "commit", "-f", "train"], writer_project)
    evaluate_greedily(writer_project, False)  # the trained network, played at random, does not beat random
    demoted = run(["bash", "scripts/retrain.sh", "--no-gate"], writer_project, **server.admin())
    assert ran_stages(demoted.stdout) == ["evaluate", "promote"]
    assert json.loads((writer_project / "data/promote/decision.json").read_text())["alias"] == "challenger"
    client = server.client(server.reader())
    assert client.get_model_version_by_alias("invaders-dqn", "challenger").version == decision["version"]
    with pytest.raises(Exception, match="not found|RESOURCE_DOES_NOT_EXIST|INVALID_PARAMETER_VALUE"):
        client.get_model_version_by_alias("invaders-dqn", "champion")


# "In seconds": MLflow's own retries would take minutes; a starved machine (here seen: 19 s to import
# MLflow) takes tens of seconds to start a Python process that imports it.
SECONDS = 60
# What a client that does not trust the server's CA says (OpenSSL's words in the brackets).
UNTRUSTED = (r"its TLS certificate is not trusted \([^()]+\); set MLFLOW_TRACKING_SERVER_CERT_PATH to the CA's"
             r" certificate")


def test_bad_credentials_stop_a_stage_before_any_work(server, tmp_path):
    """No login, a wrong password, a reader, a writer whose client does not trust the server's certificate
    (MLFLOW_TRACKING_SERVER_CERT_PATH unset, here empty as an unset CI secret gives): one line each naming
    the URI and the reason, exit 2, in seconds, before any work (nothing written)."""
    make_project(tmp_path, merge(yaml.safe_load((REPO / "params.yaml").read_text()), PARAMS), repro=False)
    no_ca = {**server.writer(), "MLFLOW_TRACKING_SERVER_CERT_PATH": ""}
    cases = [
        (server.env(), re.escape("unauthenticated: the server needs a login (set MLFLOW_TRACKING_USERNAME and"
                                 " MLFLOW_TRACKING_PASSWORD)")),
        (server.env(WRITER, "not-the-password"),
         re.escape(f"unauthenticated: wrong user name or password for user '{WRITER}'")),
        (server.reader(), re.escape(f"forbidden: user '{READER}' may not write to experiment 'invaders' (a writer needs"
                                    " EDIT on it: an admin runs `invaders users add NAME --role writer`)")),
        (no_ca, UNTRUSTED),
    ]
    for env, reason in cases:
        started = time.monotonic()
        failed = run(["python", "pipeline/baseline.py"], tmp_path, check=False, **env)
        assert time.monotonic() - started < SECONDS
        assert failed.returncode == 2, failed.stderr[-2000:]
        assert re.fullmatch(f"error: MLflow tracking URI '{re.escape(server.uri)}' is not usable: {reason}",
                            failed.stderr.strip()), failed.stderr
        assert not (tmp_path / "data").exists()
        no_secret_in(failed.stdout, failed.stderr)
    # `invaders ui` and `invaders users` without the CA: the same reason, in seconds, no retries.
    for command, says in ((["invaders", "ui"], f"MLflow tracking URI '{re.escape(server.uri)}' is not usable: "),
                          (["invaders", "users", "add", "newcomer", "--role", "reader"],
                           f"{re.escape(server.uri)}: cannot add user 'newcomer': ")):
        started = time.monotonic()
        failed = subprocess.run(command, cwd=tmp_path, input="a-password\n", capture_output=True, text=True,
                                timeout=120, env=tool_env(**{**server.admin(), "MLFLOW_TRACKING_SERVER_CERT_PATH": ""}))
        assert time.monotonic() - started < SECONDS
        assert failed.returncode == 2 and re.fullmatch(f"error: {says}{UNTRUSTED}", failed.stderr.strip()), \
            failed.stderr
    # A wrong password is not a missing model.
    play = run(["invaders", "play", "--model", "models:/invaders-dqn@champion"], tmp_path, check=False,
               **server.env(WRITER, "not-the-password"))
    assert play.returncode == 2 and play.stderr.strip().splitlines()[-1] == (
        f"error: models:/invaders-dqn@champion: unauthenticated by the MLflow store '{server.uri}' (set"
        " MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)")


def wait_for_training(server, experiment: str, runs: int, metric: str = "epsilon") -> None:
    """Until `runs` training runs on the server have logged their first points: the first log window's
    (`epsilon`), or with metric="system/" the first system metrics, a second into training."""
    client = server.client(server.admin())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            started = [r for r in client.search_runs([exp.experiment_id], "tags.stage = 'train'")
                       if any(key.startswith(metric) for key in r.data.metrics)]
            if len(started) >= runs:
                return
        time.sleep(0.5)
    raise AssertionError("training did not start")


@contextlib.contextmanager
def held(*projects: Path):
    """Every process running in `projects` (dvc and the stage it runs) stopped with SIGSTOP, and continued
    on leaving: what the test does meanwhile (stopping the server, revoking a permission) happens mid-training
    however fast the machine trains, never after a 300-step training has already ended."""
    roots = {str(root) for root in projects}
    stopped = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.cwd() in roots:
                process.suspend()
                stopped.append(process)
    assert stopped, "no process runs in " + ", ".join(sorted(roots))
    try:
        yield
    finally:
        for process in stopped:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()


def users_admin(server):
    """MLflow's client for users and permissions, as the admin."""
    from mlflow.server import get_app_client

    server.client(server.admin())  # its login, in the environment
    return get_app_client("basic-auth", tracking_uri=server.uri)


def writer_experiment(server, name: str) -> str:
    """An experiment of the test's own, so the writer project's runs stay apart; the writer may write to it.
    Returns its id."""
    experiment_id = server.client(server.admin()).create_experiment(name)
    users_admin(server).grant_user_permission(WRITER, "experiment", experiment_id, "EDIT")
    return experiment_id


TRAIN = ["python", "pipeline/train.py"]
NOTHING_TO_TRAIN = "train: the outputs are those of the current params and code: nothing to train"


def train_alone(server, writer_project: Path, root: Path, experiment: str) -> str:
    """A project in `root` with the writer project's params and start network, so its train stage runs
    alone, tracked in an experiment of its own; returns the experiment's id."""
    make_project(root, merge(yaml.safe_load((REPO / "params.yaml").read_text()),
                             {**PARAMS, "mlflow": {"experiment": experiment}}), repro=False)
    (root / "data" / "model").mkdir(parents=True)
    (root / "data" / "model" / "model.keras").write_bytes((writer_project / "data/model/model.keras").read_bytes())
    return writer_experiment(server, experiment)


def in_background(cmd: list[str], cwd: Path, **env: str):
    """`run(cmd)` in a thread; returns the function that waits for its result."""
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(result=run(cmd, cwd, check=False, **env)))
    thread.start()

    def result() -> subprocess.CompletedProcess:
        thread.join(timeout=600)
        return outcome["result"]
    return result


def kept(result: subprocess.CompletedProcess, because: str, then: str) -> int:
    """The train stage ended with its outputs written and its records kept: exit 3 and one error line
    saying `because` (a regex), how many records, and to run it again `then`; returns that number."""
    assert result.returncode == 3, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    found = len(errors) == 1 and re.fullmatch(
        rf"error: train: outputs written, but {because} ([1-9]\d*) records and the run's artifacts are kept in"
        rf" data/train/unsent-tracking\.jsonl; run the stage again {then} \(nothing is trained again\)", errors[0])
    assert found, errors
    return int(found.group(1))


def sent_by_a_rerun(server, root: Path, history: bytes) -> str:
    """The stage run again sends what was kept and trains nothing; the run is then complete. Returns its id."""
    out = root / "data" / "train"
    again = run(TRAIN, root, **server.writer())
    assert again.stdout.splitlines()[-1] == NOTHING_TO_TRAIN
    assert (out / "history.csv").read_bytes() == history and not (out / "unsent-tracking.jsonl").exists()
    client = server.client(server.reader())
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    got = histories(client, run_id)
    assert [s for s, _ in got["episode_reward"]] == [int(x.split(b",")[1]) for x in history.splitlines()[1:]]
    assert [s for s, _ in got["val_mean_reward"]] == [100, 200, 300]
    assert finished_with_artifacts(client, run_id)
    no_secret_in(again.stdout, again.stderr)
    return run_id


EVALUATION = {"mean_reward", "std_reward", "min_reward", "max_reward", "episodes", "baseline_mean_reward", "improvement"}


def training_metrics(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    return {k: v for k, v in histories(client, run_id).items() if k not in EVALUATION}


def finished_with_artifacts(client, run_id: str) -> bool:
    run = client.get_run(run_id)
    models = client.search_logged_models([run.info.experiment_id])
    return (run.info.status == "FINISHED" and any(m.source_run_id == run_id for m in models)
            and {a.path for a in client.list_artifacts(run_id)} >= {"history.csv", "validation.csv"})


def test_two_trainings_survive_the_server_going_away(server, writer_project, tmp_path):
    """Two pipelines at once (up to `train`: the whole pipeline runs in the writer project); the server
    (MLflow and PostgreSQL) is stopped while both train and started again 20 s later. Both finish; each run
    has every point: the one with the writer project's params has exactly its training metrics, the other
    one a point per game, log window and validation round."""
    projects = {"same": tmp_path / "same", "other": tmp_path / "other"}
    base = merge(yaml.safe_load((REPO / "params.yaml").read_text()), PARAMS)
    for name, root in projects.items():
        root.mkdir()
        make_project(root, merge(base, {"mlflow": {"experiment": "outage"}, "seed": 0 if name == "same" else 7}),
                     repro=False)
    writer_experiment(server, "outage")
    results = {}

    def pipeline(name):
        # A loaded machine can take a minute to start PostgreSQL and MLflow again: wait for it.
        results[name] = run(["dvc", "repro", "train"], projects[name], check=False, INVADERS_TRACKING_WAIT="300",
                            **server.writer())

    threads = [threading.Thread(target=pipeline, args=(name,)) for name in projects]
    for t in threads:
        t.start()
    wait_for_training(server, "outage", runs=2)
    with held(*projects.values()):
        server.stop()
    time.sleep(20)
    server.start()  # the same directory: its users, runs and artifacts are all still there
    for t in threads:
        t.join(timeout=600)
    for name, result in results.items():
        assert result.returncode == 0, f"{name}: {result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        assert "tracking: the server does not answer" in result.stdout + result.stderr
        no_secret_in(result.stdout, result.stderr)

    client = server.client(server.reader())
    run_ids = {name: json.loads((root / "data/train/mlflow_run.json").read_text())["run_id"]
               for name, root in projects.items()}
    reference = json.loads((writer_project / "data/train/mlflow_run.json").read_text())["run_id"]
    assert training_metrics(client, run_ids["same"]) == training_metrics(client, reference)
    got = histories(client, run_ids["other"])
    games = (projects["other"] / "data/train/history.csv").read_text().splitlines()[1:]
    assert [s for s, _ in got["episode_reward"]] == [int(line.split(",")[1]) for line in games]
    assert [s for s, _ in got["val_mean_reward"]] == [100, 200, 300]
    assert [s for s, _ in got["epsilon"]] == [100, 200, 300]
    assert all(finished_with_artifacts(client, run_id) for run_id in run_ids.values())


def test_records_kept_while_the_server_stays_away_are_sent_by_a_rerun(server, writer_project, tmp_path, monkeypatch):
    """The server goes away during training and is still away when it ends: the outputs are written,
    the records kept, exit 3; after it is back, the stage run again sends them without training.
    Meanwhile an outbox with room for 10 records in memory takes 100: 90 wait in its spill file, and
    all 100 arrive in order once the server is back."""
    train_alone(server, writer_project, tmp_path, "stays-away")
    import mlflow

    from invaders.tracking.outbox import Outbox

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.uri)
    spill_run = server.client(server.writer()).create_run(
        server.client(server.writer()).get_experiment_by_name("stays-away").experiment_id).info.run_id
    first = in_background(TRAIN, tmp_path, INVADERS_TRACKING_WAIT="5", **server.writer())
    wait_for_training(server, "stays-away", runs=1)
    with held(tmp_path):
        server.stop()
    outbox = Outbox(spill_run, tmp_path / "spill.jsonl", memory_limit=10, echo=lambda line: None)
    for step in range(100):
        outbox.log_metrics({"x": float(step)}, step)
    assert len((tmp_path / "spill.jsonl").read_text().splitlines()) == 90
    away = first()
    kept(away, "the tracking server does not answer:", "when it is back")
    out = tmp_path / "data" / "train"
    assert (out / "unsent-tracking.jsonl").is_file() and (out / "model.keras").is_file()
    history = (out / "history.csv").read_bytes()
    no_secret_in(away.stdout, away.stderr, (out / "unsent-tracking.jsonl").read_text())

    server.start()
    assert outbox.close(120.0) == [] and not (tmp_path / "spill.jsonl").exists()
    mlflow.set_tracking_uri("")
    spilled = server.client(server.reader()).get_metric_history(spill_run, "x")
    assert sorted((m.step, m.value) for m in spilled) == [(i, float(i)) for i in range(100)]
    sent_by_a_rerun(server, tmp_path, history)


def test_records_a_writer_may_no_longer_send_are_kept_and_sent_once_allowed_again(server, writer_project, tmp_path):
    """The writer's EDIT on the experiment is revoked a second into training: not an outage. One line
    naming the server's answer, training goes on to the end, every record from then on is kept, and the
    stage exits 3 with that answer. Once EDIT is granted again, the stage run again sends them without
    training: the run ends with exactly the training metrics and params of the writer project's run."""
    experiment_id = train_alone(server, writer_project, tmp_path, "revoked")
    first = in_background(TRAIN, tmp_path, **server.writer())
    wait_for_training(server, "revoked", runs=1, metric="system/")
    with held(tmp_path):
        users_admin(server).revoke_user_permission(WRITER, "experiment", experiment_id)
    refused = first()
    answer = "HTTP 403 PERMISSION_DENIED: Permission denied"
    count = kept(refused, f"the tracking server refused the run's records: {answer} \\(user '{WRITER}' needs EDIT on"
                          " experiment 'revoked'\\);", "once that is fixed")
    said = [line for line in (refused.stdout + refused.stderr).splitlines() if line.startswith("tracking:")]
    assert said == [f"tracking: the tracking server refused the run's records: {answer}; keeping them for the next"
                    " run of the stage, training goes on"]
    out = tmp_path / "data" / "train"
    assert json.loads((out / "metrics.json").read_text())["steps"] == 300  # trained to the end
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    header = json.loads((out / "unsent-tracking.jsonl").read_text().splitlines()[0])
    assert header["run_id"] == run_id and len((out / "unsent-tracking.jsonl").read_text().splitlines()) == count + 1
    assert server.client(server.reader()).get_run(run_id).info.status == "RUNNING"  # nothing finished it
    no_secret_in(refused.stdout, refused.stderr)

    users_admin(server).grant_user_permission(WRITER, "experiment", experiment_id, "EDIT")
    assert sent_by_a_rerun(server, tmp_path, (out / "history.csv").read_bytes()) == run_id
    client = server.client(server.reader())
    reference = json.loads((writer_project / "data/train/mlflow_run.json").read_text())["run_id"]
    assert training_metrics(client, run_id) == training_metrics(client, reference)
    params = {k: v for k, v in client.get_run(run_id).data.params.items() if k != "mlflow.experiment"}
    assert params == {k: v for k, v in client.get_run(reference).data.params.items() if k != "mlflow.experiment"}


def test_an_older_schema_is_upgraded_after_saying_so(tmp_path):
    """What the server script runs before the server: `mlflow db upgrade` on a database an older MLflow
    made (here one migration back, in SQLite: the step is the same for any SQLAlchemy store)."""
    import alembic.command
    from mlflow.store.db import utils

    db = f"sqlite:///{tmp_path}/tracking.db"
    engine = utils.create_sqlalchemy_engine(db)
    utils._initialize_tables(engine)
    head = utils._get_latest_schema_revision()
    alembic.command.downgrade(utils._get_alembic_config(db), "-1")
    older = utils._get_schema_version(engine)
    assert older != head
    (tmp_path / "auth.ini").write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{tmp_path}/users.db"
                                       "\nadmin_username = admin\n")
    prepared = run(["python", "-m", "invaders.ops.team_server", "prepare"], tmp_path, MLFLOW_BACKEND_STORE_URI=db,
                   MLFLOW_AUTH_CONFIG_PATH=str(tmp_path / "auth.ini"), MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
                   MLFLOW_FLASK_SERVER_SECRET_KEY="test-key")
    assert prepared.stdout == (f"mlflow-server: the schema of {db} is older than this MLflow's ({older} -> {head}):"
                               " running `mlflow db upgrade` (take a backup first if it matters)\n")
    assert utils._get_schema_version(engine) == head
    again = run(["python", "-m", "invaders.ops.team_server", "prepare"], tmp_path, MLFLOW_BACKEND_STORE_URI=db,
                MLFLOW_AUTH_CONFIG_PATH=str(tmp_path / "auth.ini"), MLFLOW_FLASK_SERVER_SECRET_KEY="test-key")
    assert again.stdout == ""  # up to date, and the admin exists: no password needed any more
