"""Sweeps on a real Ray cluster on loopback: a head with no CPUs and two worker nodes (each its own
raylet, one CPU), started with a token by scripts/ray-node.sh here; a real MLflow server; `invaders sweep`
as a user runs it. A sweep runs its trials on both nodes and lands on the server; a node that dies
mid-trial costs nothing but time; bad input is refused in seconds, and so are a head started with no
token (a second cluster, a head alone) and a driver without the cluster's token. Everything started here
is stopped here."""

import csv
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import BIN, REPO, free_port, serving, tool_env

# Wall-clock metrics differ between any two runs; every other point must be the same.
WALL_CLOCK = ("steps_per_s", "train_duration_seconds", "train_steps_per_s")
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}


class RayCluster:
    """`ray start --block` for a head (0 CPUs) and two 1-CPU worker nodes, each in a process group of its
    own, with distinct ports (the dashboard agent's fixed port would collide) and a small object store.
    With `token` (the default) every node starts through scripts/ray-node.sh, with a token file of this
    cluster's own; without, the head is `ray start` as the recipe once wrote it: no token anywhere (a HOME
    of its own, no RAY_AUTH_* variables), a cluster that runs code for anyone who reaches it."""

    def __init__(self, temp_dir: Path, log_dir: Path, token: bool = True):
        self.temp_dir, self.log_dir, self.token = temp_dir, log_dir, token
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []
        if token:  # in a file of its own (not ~/.ray/auth_token), which its nodes and drivers read
            self.token_file = temp_dir / "auth_token"
            self.token_file.write_text(secrets.token_hex(32))
            self.token_file.chmod(0o600)
            self.env = {**RAY_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_file)}
        else:
            (temp_dir / "home").mkdir()
            self.env = {**RAY_ENV, "HOME": str(temp_dir / "home")}

    def environ(self) -> dict[str, str]:
        """The environment of this cluster's nodes, and of a driver that connects to it."""
        return without_ray_auth(tool_env(**self.env)) if not self.token else tool_env(**self.env)

    def _start(self, name: str, kind: str, *args: str) -> None:
        ports = {f"--{flag}": str(free_port()) for flag in ("node-manager-port", "object-manager-port",
                                                            "dashboard-agent-listen-port", "metrics-export-port",
                                                            "runtime-env-agent-port", "dashboard-agent-grpc-port")}
        start = [str(REPO / "scripts" / "ray-node.sh"), kind] if self.token else \
            [str(BIN / "ray"), "start", *(["--head"] if kind == "head" else [])]
        cmd = [*start, "--block", "--object-store-memory", str(80 * 2**20), "--temp-dir", str(self.temp_dir),
               "--node-ip-address", "127.0.0.1", *[x for kv in ports.items() for x in kv], *args]
        with open(self.log_dir / f"{name}.log", "w") as log:
            self.processes.append(subprocess.Popen(cmd, env=self.environ(), stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True))

    def start(self, workers: tuple[str, ...] = ("node-a", "node-b")) -> None:
        self._start("head", "head", "--port", str(self.port), "--num-cpus", "0", "--include-dashboard=false",
                    "--ray-client-server-port", str(free_port()))
        self._wait(1)
        for count, name in enumerate(workers, start=2):  # one at a time: 2 cores start them slowly
            self._start(name, "worker", "--address", self.address, "--num-cpus", "1")
            self._wait(count)

    def nodes(self) -> list[dict]:
        script = ("import json, ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False);"
                  "print(json.dumps([n for n in ray.nodes() if n['Alive']]))" % self.address)
        done = subprocess.run([sys.executable, "-c", script], env=self.environ(), capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def jobs(self) -> tuple[str, list[str]]:
        """(the id of the driver that asks, the ids of every other driver the cluster has had): a driver
        is a job in the cluster's job table, which holds the ones that ended too."""
        script = ("import json, ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False);"
                  "me = ray.get_runtime_context().get_job_id();"
                  "print(json.dumps([me, sorted(j['JobID'] for j in ray._private.state.jobs() if j['JobID'] != me)]))"
                  % self.address)
        done = subprocess.run([sys.executable, "-c", script], env=self.environ(), capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return tuple(json.loads(done.stdout.strip().splitlines()[-1]))

    def _wait(self, count: int) -> None:
        deadline = time.monotonic() + 180
        while True:  # the head's port first: a driver that cannot connect fails after a long wait
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                break
            except OSError:
                assert self.processes[0].poll() is None and time.monotonic() < deadline, self.logs()
                time.sleep(0.5)
        while len(self.nodes()) < count:
            assert all(p.poll() is None for p in self.processes), self.logs()
            assert time.monotonic() < deadline, f"the cluster did not reach {count} nodes\n{self.logs()}"
            time.sleep(1)

    def logs(self) -> str:
        return "".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(self.log_dir.glob("*.log")))

    def ours(self) -> list[psutil.Process]:
        """Processes of this cluster: everything whose command line names its temp dir."""
        found = []
        for p in psutil.process_iter(["cmdline", "status"]):
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(str(self.temp_dir) in a for a in p.info["cmdline"] or []):
                found.append(p)
        return found

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while (left := self.ours()) and time.monotonic() < deadline:
            time.sleep(1)
        for p in left:  # a worker that outlived its raylet
            p.kill()
        assert not left, f"left running: {[p.info['cmdline'][:2] for p in left]}"


def without_ray_auth(env: dict[str, str]) -> dict[str, str]:
    """`env` with no token and no token mode in it."""
    return {k: v for k, v in env.items() if not k.startswith("RAY_AUTH_")}


@pytest.fixture(scope="module")
def cluster():
    temp_dir = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    ray_cluster = RayCluster(temp_dir, temp_dir)
    try:
        ray_cluster.start()
        yield ray_cluster
    finally:
        ray_cluster.stop()  # which checks that none of its processes is left
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def open_cluster():
    """A head alone (no CPUs: nothing could run on it anyway), started with no token."""
    temp_dir = Path(tempfile.mkdtemp(prefix="ro-", dir="/tmp"))
    ray_cluster = RayCluster(temp_dir, temp_dir, token=False)
    try:
        ray_cluster.start(workers=())
        yield ray_cluster
    finally:
        ray_cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A real MLflow server on a SQLite store, with its artifacts proxied."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = ["env", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false", str(BIN / "mlflow"), "server", "--backend-store-uri",
           f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    with serving(cmd, root, url, root / "server.log"):
        yield url


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep-project")
    shutil.copytree(REPO / "presets", root / "presets")
    shutil.copytree(REPO / "sweeps", root / "sweeps")
    return root


def sweep(project: Path, cluster, tracking: str, *args: str, file: str = "sweeps/smoke.yaml", wait: bool = True):
    cmd = [str(BIN / "invaders"), "sweep", file, "--address", cluster.address, *args]
    env = {**cluster.environ(), "MLFLOW_TRACKING_URI": tracking}
    if wait:
        return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=900)
    return subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sweep_in_background(project: Path, cluster, tracking: str, file: str):
    """`sweep` without waiting: the process, a dict its stdout and stderr land in when it ends, and the
    thread that reads them (join it before reading the dict)."""
    process = sweep(project, cluster, tracking, file=file, wait=False)
    output = {}
    reader = threading.Thread(target=lambda: output.update(zip(("stdout", "stderr"), process.communicate())))
    reader.start()
    return process, output, reader


def wait_for(found, process: subprocess.Popen, output: dict):
    """Poll `found()` until it returns something, while the sweep still runs (at most 300 s); returns it."""
    deadline = time.monotonic() + 300
    while not (value := found()):
        assert process.poll() is None and time.monotonic() < deadline, output
        time.sleep(0.2)
    return value


def client(tracking: str):
    import mlflow

    return mlflow.MlflowClient(tracking)


def histories(mlflow_client, run_id: str) -> dict:
    run = mlflow_client.get_run(run_id)
    return {key: sorted((m.step, m.value) for m in mlflow_client.get_metric_history(run_id, key))
            for key in run.data.metrics if not key.startswith("system/") and key not in WALL_CLOCK}


def without_wall_clock(path: Path) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    return [{k: v for k, v in row.items() if k != "wall_time_seconds"} for row in rows]


def attempts(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "attempts.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def smoke(project, cluster, tracking):
    started = time.monotonic()
    done = sweep(project, cluster, tracking, "--write-best", "best.yaml")
    assert done.returncode == 0, done.stderr[-4000:]
    return done, time.monotonic() - started


@pytest.mark.cluster
@pytest.mark.server
def test_a_sweep_runs_on_both_nodes_and_every_trial_is_a_child_run_on_the_server(project, cluster, tracking, smoke):
    done, seconds = smoke
    out = project / "data" / "sweeps" / "smoke"
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "summary.md").read_text() in done.stdout  # printed at the end
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "RUNNING" in done.stdout and "validation" in done.stdout  # the live table
    trials = summary["trials"]
    assert sorted(t["id"] for t in trials) == ["base-seed0", "base-seed1", "s1-seed0", "s1-seed1"]
    assert all(t["state"] == "DONE" for t in trials)
    workers = {n["NodeID"][:12] for n in cluster.nodes() if n["Resources"].get("CPU")}
    assert len(workers) == 2 and {t["node"] for t in trials} == workers  # both worker nodes ran trials

    mlflow = client(tracking)
    parent = json.loads((out / "sweep.json").read_text())["parent_run_id"]
    experiment = mlflow.get_run(parent).info.experiment_id
    assert mlflow.get_run(parent).data.tags["sweep.cluster_auth"] == "token"  # the cluster's nodes want one
    children = mlflow.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}' and tags.stage = 'train'")
    assert sorted(r.data.tags["sweep.trial"] for r in children) == sorted(t["id"] for t in trials)
    # Each trial's random baseline is a run of its own, as the baseline stage's is, and its evaluation names it.
    baselines = mlflow.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}' and tags.stage = 'baseline'")
    assert sorted(r.data.tags["sweep.trial"] for r in baselines) == sorted(t["id"] for t in trials)
    baseline_of = {r.data.tags["sweep.trial"]: r.info.run_id for r in baselines}
    for run in children:
        trial = next(t for t in trials if t["id"] == run.data.tags["sweep.trial"])
        assert run.info.run_id == trial["run_id"] and run.info.status == "FINISHED"
        assert run.data.tags["baseline_run_id"] == baseline_of[trial["id"]]
        assert run.data.metrics["mean_reward"] == trial["score"]  # the summary agrees with the runs
        assert any(k.startswith("system/") for k in run.data.metrics) and "episode_reward" in run.data.metrics
        assert run.data.params["agent.learning_rate"] == str(0.0003 if trial["setting"] == "s1" else 0.0001)
        assert run.data.params["seed"] == str(trial["seed"])
        artifacts = {a.path for a in mlflow.list_artifacts(run.info.run_id)}
        assert {"history.csv", "validation.csv", "evaluation", "outputs.sha256"} <= artifacts
        assert mlflow.search_logged_models([experiment], filter_string=f"source_run_id = '{run.info.run_id}'")
    assert {"summary.json", "summary.md", "scores.png", "smoke.yaml"} <= {a.path for a in mlflow.list_artifacts(parent)}
    for name, setting in summary["settings"].items():
        scores = [t["score"] for t in trials if t["setting"] == name]
        assert setting["mean"] == pytest.approx(sum(scores) / 2)
        assert setting["mean_ci"][0] <= setting["mean"] <= setting["mean_ci"][1]
    best = yaml.safe_load((project / "best.yaml").read_text())
    assert best["agent"]["learning_rate"] == (0.0003 if summary["best"] == "s1" else 0.0001) and best["seed"] == 0
    print(f"smoke sweep on the cluster: {seconds:.0f} s")


@pytest.mark.cluster
@pytest.mark.server
def test_a_trial_whose_node_dies_restarts_on_the_other_node_and_ends_as_if_it_had_not(project, cluster, tracking,
                                                                                       smoke):
    """The base setting's two trials again, in a sweep of their own; the node of one of them is killed
    (its raylet) once the trial has reported its second checkpoint to Ray: it restarts on the other node
    from that checkpoint, in the same MLflow run, and its outputs and metric histories are those of the
    smoke sweep's."""
    (project / "sweeps" / "fault.yaml").write_text(yaml.safe_dump({"name": "fault", "params": "presets/smoke.yaml",
                                                                   "seeds": [0, 1], "max_failures": 3}))
    out = project / "data" / "sweeps" / "fault"
    process, output, reader = sweep_in_background(project, cluster, tracking, "sweeps/fault.yaml")
    # Its second checkpoint (step 200 of 300) is on disk, so the driver has taken in the first one's report
    # (killed at the first's folder, the trial could start over unrestored): between it and its end.
    victim = wait_for(lambda: next((trial for trial in ("base-seed0", "base-seed1")
                                    if (out / "ray" / "fault" / trial / "checkpoint_000001").is_dir()), None),
                      process, output)
    worker = psutil.Process(attempts(out / "trials" / victim)[0]["pid"])
    raylet = psutil.Process(worker.ppid())
    assert raylet.name() == "raylet"
    raylet.kill()
    reader.join(timeout=600)
    assert process.returncode == 0, output.get("stderr", "")[-4000:]

    tried = attempts(out / "trials" / victim)
    assert len(tried) >= 2 and tried[-1]["restored"] and tried[-1]["node"] != tried[0]["node"]
    summary = json.loads((out / "summary.json").read_text())
    assert all(t["state"] == "DONE" for t in summary["trials"])
    reference = project / "data" / "sweeps" / "smoke" / "trials" / victim
    trial = out / "trials" / victim
    for name in ("train/validation.csv", "train/metrics.json", "eval/episodes.csv", "train/model.keras",
                 "train/last.keras", "model/model.keras"):
        if name == "train/metrics.json":
            keep = ("steps", "episodes", "last10_mean_reward", "selected_step", "selected_val_mean_reward")
            got, want = (json.loads((d / name).read_text()) for d in (trial, reference))
            assert {k: got[k] for k in keep} == {k: want[k] for k in keep}
        else:
            assert (trial / name).read_bytes() == (reference / name).read_bytes(), name
    assert without_wall_clock(trial / "train" / "history.csv") == without_wall_clock(reference / "train" / "history.csv")

    mlflow = client(tracking)
    run_id = next(t["run_id"] for t in summary["trials"] if t["id"] == victim)
    reference_id = next(t["run_id"] for t in json.loads(
        (project / "data" / "sweeps" / "smoke" / "summary.json").read_text())["trials"] if t["id"] == victim)
    run = mlflow.get_run(run_id)
    assert "resumed_from_step" in run.data.tags and run.info.status == "FINISHED"
    parent = json.loads((out / "sweep.json").read_text())["parent_run_id"]
    assert len(mlflow.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent}' and tags.stage = 'train'")) == 2
    assert histories(mlflow, run_id) == histories(mlflow, reference_id)


@pytest.mark.cluster
@pytest.mark.server
def test_a_sweep_stopped_with_ctrl_c_continues_with_resume_as_if_it_had_not_stopped(project, cluster, tracking, smoke):
    """Ctrl-C (SIGINT) to the driver while the trial is between checkpoints: one line saying to use
    --resume, exit 130; `--resume` then finishes the trial from its checkpoint, in the same parent and child
    runs, with the outputs of the smoke sweep's same trial."""
    (project / "sweeps" / "resume.yaml").write_text(yaml.safe_dump({"name": "resume", "params": "presets/smoke.yaml",
                                                                    "seeds": [0]}))
    out = project / "data" / "sweeps" / "resume"
    process, output, reader = sweep_in_background(project, cluster, tracking, "sweeps/resume.yaml")
    # The second checkpoint on disk (step 200 of 300): by then the driver has long taken in the first, which
    # a checkpoint needs before the state Tune saves on Ctrl-C holds it (a trial with none starts over).
    wait_for(lambda: (out / "ray" / "resume" / "base-seed0" / "checkpoint_000001").is_dir(), process, output)
    process.send_signal(signal.SIGINT)
    reader.join(timeout=300)
    assert process.returncode == 130, output.get("stderr", "")[-4000:]
    assert output["stderr"].strip().splitlines()[-1] == (
        "error: sweep 'resume' stopped before its trials ended; continue it with `invaders sweep ... --resume`")
    assert not (out / "summary.json").exists()
    parent = json.loads((out / "sweep.json").read_text())["parent_run_id"]

    resumed = sweep(project, cluster, tracking, "--resume", file="sweeps/resume.yaml")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert json.loads((out / "sweep.json").read_text())["parent_run_id"] == parent
    summary = json.loads((out / "summary.json").read_text())
    assert [t["state"] for t in summary["trials"]] == ["DONE"]
    trial, reference = out / "trials" / "base-seed0", project / "data" / "sweeps" / "smoke" / "trials" / "base-seed0"
    assert attempts(trial)[-1]["restored"]  # from its checkpoint, not from the start
    for name in ("train/validation.csv", "eval/episodes.csv", "train/model.keras", "train/last.keras"):
        assert (trial / name).read_bytes() == (reference / name).read_bytes(), name
    assert without_wall_clock(trial / "train" / "history.csv") == without_wall_clock(reference / "train" / "history.csv")
    mlflow = client(tracking)
    children = mlflow.search_runs([mlflow.get_run(parent).info.experiment_id], f"tags.mlflow.parentRunId = '{parent}' and tags.stage = 'train'")
    assert [r.info.run_id for r in children] == [summary["trials"][0]["run_id"]]
    assert mlflow.get_run(summary["trials"][0]["run_id"]).info.status == "FINISHED"
    assert mlflow.get_run(parent).info.status == "FINISHED"


def refused(done: subprocess.CompletedProcess, started: float) -> str:
    """The one line of a sweep refused as bad input (exit 2, in seconds); returns it without `error: `."""
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    assert time.monotonic() - started < 30
    return lines[0][7:]


def no_parent_run(tracking: str, name: str) -> bool:
    mlflow = client(tracking)
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    return not experiments or not mlflow.search_runs(experiments, f"attributes.run_name = 'sweep-{name}'")


@pytest.mark.cluster
@pytest.mark.server
def test_a_cluster_open_to_anyone_is_refused_before_anything_starts(project, open_cluster, cluster, tracking):
    """A head started with no token runs code for any driver that reaches it: `invaders sweep --address`
    asks it, as a stranger would, with no token; it answers, so the sweep stops in one line (exit 2) in
    seconds, even from a driver that has a token (this one has the token cluster's), before any MLflow
    run, any file or any Ray job (driver) exists."""
    (project / "sweeps" / "open.yaml").write_text(yaml.safe_dump({"name": "open", "params": "presets/smoke.yaml",
                                                                  "seeds": [0]}))
    me, before = open_cluster.jobs()
    started = time.monotonic()
    done = subprocess.run([str(BIN / "invaders"), "sweep", "sweeps/open.yaml", "--address", open_cluster.address],
                          cwd=project, env={**cluster.environ(), "MLFLOW_TRACKING_URI": tracking},
                          capture_output=True, text=True, timeout=120)
    line = refused(done, started)
    assert line.startswith(f"--address {open_cluster.address}: this Ray cluster accepts connections without a"
                           " token: anyone who reaches its port can run code on its nodes"), line
    assert "RAY_AUTH_MODE=token" in line and line.endswith("pass --allow-unauthenticated-cluster for a cluster"
                                                           " you know is isolated")
    assert not (project / "data" / "sweeps" / "open").exists() and no_parent_run(tracking, "open")
    assert open_cluster.jobs()[1] == sorted([*before, me])  # no driver but the one that asked before


@pytest.mark.cluster
def test_allow_unauthenticated_cluster_lets_a_sweep_use_an_open_cluster_and_names_it(project, open_cluster):
    """With --allow-unauthenticated-cluster the check passes (the sweep gets as far as its --resume,
    which has nothing to continue), and the parent run's tag says how the cluster was let in."""
    (project / "sweeps" / "allowed.yaml").write_text(yaml.safe_dump({"name": "allowed", "params": "presets/smoke.yaml",
                                                                     "seeds": [0]}))
    started = time.monotonic()
    done = subprocess.run([str(BIN / "invaders"), "sweep", "sweeps/allowed.yaml", "--address", open_cluster.address,
                           "--allow-unauthenticated-cluster", "--resume"], cwd=project,
                          env={**open_cluster.environ(), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
                          capture_output=True, text=True, timeout=120)
    assert refused(done, started).startswith("--resume: "), done.stderr
    code = ("from invaders.sweep.driver import check_cluster;"
            f"print(check_cluster({open_cluster.address!r}, 'http://127.0.0.1:9', True))")
    tag = subprocess.run([sys.executable, "-c", code], env=open_cluster.environ(), capture_output=True, text=True,
                         timeout=120)
    assert tag.stdout.strip() == "none (allowed by --allow-unauthenticated-cluster)", tag.stderr[-2000:]


@pytest.mark.cluster
@pytest.mark.server
@pytest.mark.parametrize("driver", ["another token", "no token"])
def test_a_driver_without_the_clusters_token_is_refused_in_one_line(tmp_path, project, cluster, tracking, driver):
    """The token cluster refuses a driver with another token, or with none (a HOME of its own, no
    RAY_AUTH_*): the sweep says so in one line (exit 2) in seconds, before any MLflow run or file, and
    neither token is in its output."""
    (project / "sweeps" / "denied.yaml").write_text(yaml.safe_dump({"name": "denied", "params": "presets/smoke.yaml",
                                                                    "seeds": [0]}))
    other = tmp_path / "other_token"
    other.write_text(secrets.token_hex(32))
    other.chmod(0o600)
    (tmp_path / "home").mkdir()
    env = {**without_ray_auth(cluster.environ()), "MLFLOW_TRACKING_URI": tracking, "HOME": str(tmp_path / "home")}
    if driver == "another token":
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(other)}
    started = time.monotonic()
    done = subprocess.run([str(BIN / "invaders"), "sweep", "sweeps/denied.yaml", "--address", cluster.address],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)
    line = refused(done, started)
    says = (f"the cluster refused this driver's token (from RAY_AUTH_TOKEN_PATH={other}): it is not the one the"
            " cluster's nodes were started with; " if driver == "another token" else
            "the cluster requires a token and this driver has none; ")
    assert line.startswith(f"--address {cluster.address}: {says}run the driver with RAY_AUTH_MODE=token"), line
    for token in (other.read_text(), cluster.token_file.read_text()):
        assert token not in done.stdout + done.stderr
    assert not (project / "data" / "sweeps" / "denied").exists() and no_parent_run(tracking, "denied")


@pytest.mark.unit
def test_the_node_script_starts_ray_with_a_private_token_and_refuses_an_unusable_one(tmp_path):
    """scripts/ray-node.sh (shellcheck-clean) runs `ray start` (here a stand-in that shows what it got)
    with RAY_AUTH_MODE=token and the token file; the head makes the file (mode 0600, 64 hex digits,
    never printed) when there is none, a worker refuses to start without it, and both refuse one that
    is empty or that others can read. The real nodes of this module's token cluster start through it."""
    script = REPO / "scripts" / "ray-node.sh"
    lint = subprocess.run([str(BIN / "shellcheck"), str(script)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout
    stub = tmp_path / "bin" / "ray"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\necho "ray $* mode=$RAY_AUTH_MODE path=$RAY_AUTH_TOKEN_PATH token=${RAY_AUTH_TOKEN:-}"\n')
    stub.chmod(0o755)
    (tmp_path / "home").mkdir()
    env = {"PATH": f"{stub.parent}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "RAY_AUTH_TOKEN": "ignored"}

    def node(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=60)

    token = tmp_path / "home" / ".ray" / "auth_token"
    worker = node("worker", "--address", "10.0.0.5:6379")
    assert worker.returncode == 2 and worker.stderr.startswith(f"error: {token}: no token file; copy the head's")
    head = node("head", "--port", "6379", "--num-cpus", "0")
    assert head.returncode == 0, head.stderr
    assert head.stdout == f"ray start --head --port 6379 --num-cpus 0 mode=token path={token} token=\n"
    assert re.fullmatch(r"[0-9a-f]{64}", token.read_text()) and token.stat().st_mode & 0o777 == 0o600
    assert token.read_text() not in head.stdout + head.stderr
    first = token.read_text()
    worker = node("worker", "--address", "10.0.0.5:6379")
    assert worker.stdout == f"ray start --address 10.0.0.5:6379 mode=token path={token} token=\n"
    assert node("head").returncode == 0 and token.read_text() == first  # made once, then kept
    token.chmod(0o644)
    loose = node("worker", "--address", "10.0.0.5:6379")
    assert loose.returncode == 2 and loose.stderr == f"error: {token}: readable by others than its owner (mode 644):" \
        f" chmod 600 {token}\n" and not loose.stdout
    token.write_text("")
    token.chmod(0o600)
    assert node("head").stderr == f"error: {token}: the token file is empty; copy the head's again\n"
    assert node("nodes").stderr == "error: unknown node kind 'nodes' (allowed: head, worker)\n"


@pytest.mark.e2e
@pytest.mark.parametrize("content, args, env, says", [
    ("name: x\nseeds: [0\n", [], {}, r"sweeps/bad.yaml: line \d+ not valid YAML"),
    ("name: x\nseeds: [0]\ngrids: {}\n", [], {}, "sweeps/bad.yaml: grids: unknown key"),
    ("name: x\n", [], {}, "sweeps/bad.yaml: seeds: missing (a sweep needs name and seeds)"),
    ("name: x\nparams: presets/smoke.yaml\nseeds: [0]\ngrid: {agent.learnin_rate: [0.1]}\n", [], {},
     "sweeps/bad.yaml: grid: agent.learnin_rate: unknown params key"),
    ("name: x\nparams: presets/smoke.yaml\nseeds: [0]\ngrid: {agent.warmup_steps: [100, 500]}\n", [], {},
     "sweeps/bad.yaml: setting agent.warmup_steps=500, seed 0: agent.warmup_steps (500) must be less than"
     " train.steps (300)"),
    ("name: x\nparams: presets/smoke.yaml\nseeds: [0]\ngrid: {agent.learning_rate: [2.0]}\n", [], {},
     "sweeps/bad.yaml: setting agent.learning_rate=2, seed 0: agent.learning_rate: Input should be less than"),
    ("name: x\nparams: presets/smoke.yaml\nseeds: [0]\n", ["--address", "127.0.0.1:9"],
     {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, "--address 127.0.0.1:9: no Ray cluster answers there"),
    ("name: x\nparams: presets/smoke.yaml\nseeds: [0]\n", ["--address", "127.0.0.1:9"], {},
     "a sweep on a Ray cluster (--address 127.0.0.1:9) needs a tracking server that every node can reach"),
    ("name: x\nparams: presets/smoke.yaml\nseeds: [0]\n", ["--resume"], {}, "--resume: "),
])
def test_bad_sweep_input_is_one_line_and_exit_2_in_seconds(tmp_path, content, args, env, says):
    shutil.copytree(REPO / "presets", tmp_path / "presets")
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "bad.yaml").write_text(content)
    started = time.monotonic()
    done = subprocess.run([str(BIN / "invaders"), "sweep", "sweeps/bad.yaml", *args], cwd=tmp_path,
                          env=tool_env(**RAY_ENV, **env), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and (re.match(says, line[7:]) or line[7:].startswith(says)), line
    assert time.monotonic() - started < 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["presets", "sweeps"]  # nothing written


@pytest.mark.unit
def test_settings_are_the_base_then_the_grid_crossed_with_seeded_random_draws(tmp_path):
    from invaders.sweep.spec import load

    shutil.copytree(REPO / "presets", tmp_path / "presets")
    spec = {"name": "x", "params": str(tmp_path / "presets" / "smoke.yaml"), "seeds": [3, 4],
            "grid": {"agent.learning_rate": [0.0001, 0.0003], "agent.n_step": [1, 3]},
            "random": {"samples": 2, "seed": 7, "space": {"agent.gamma": {"uniform": [0.9, 0.99]}}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    sweep, trials = load(tmp_path / "s.yaml")
    again = load(tmp_path / "s.yaml")[1]
    assert [t.model_dump() for t in trials] == [t.model_dump() for t in again]  # the same draws every time
    settings = list(dict.fromkeys(t.setting for t in trials))
    assert settings[0] == "base" and len(settings) == 1 + 2 * 4  # no draw equals the base
    assert [t.seed for t in trials[:2]] == [3, 4] and all(t.params["seed"] == t.seed for t in trials)
    gammas = {t.overrides["agent.gamma"] for t in trials if t.overrides}
    assert len(gammas) == 2 and all(0.9 <= g <= 0.99 for g in gammas)
    s1 = next(t for t in trials if t.setting == "s1")
    assert s1.params["agent"]["learning_rate"] == s1.overrides["agent.learning_rate"]

    spec["grid"] = {"agent.learning_rate": [0.0001]}  # only the base's value: the base alone, once
    spec.pop("random")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert [t.id for t in load(tmp_path / "s.yaml")[1]] == ["base-seed3", "base-seed4"]


@pytest.mark.unit
def test_base_sets_keys_for_the_base_and_every_setting(tmp_path):
    from invaders.sweep.spec import load

    shutil.copytree(REPO / "presets", tmp_path / "presets")
    spec = {"name": "x", "params": str(tmp_path / "presets" / "smoke.yaml"), "seeds": [0],
            "base": {"agent.head": "quantile", "agent.quantiles": 8},
            "grid": {"agent.quantiles": [8, 16], "agent.augment": ["none", "shift"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    trials = load(tmp_path / "s.yaml")[1]
    assert all(t.params["agent"]["head"] == "quantile" for t in trials)
    # (8, none) is the base with its overrides: it runs once, as the setting `base`
    points = [(t.params["agent"]["quantiles"], t.params["agent"]["augment"]) for t in trials]
    assert points[0] == (8, "none") and sorted(points) == [(8, "none"), (8, "shift"), (16, "none"), (16, "shift")]


@pytest.mark.unit
def test_validating_a_sweep_file_does_not_import_ray(tmp_path):
    """`invaders.sweep.spec` is the sweep file's schema and its trials: loading one (every trial's params
    built and validated) needs no Ray, which only the driver, the trials and the live table import."""
    shutil.copytree(REPO / "presets", tmp_path / "presets")
    spec = {"name": "x", "params": "presets/smoke.yaml", "seeds": [0, 1], "grid": {"agent.n_step": [1, 3]},
            "random": {"samples": 1, "space": {"agent.gamma": {"uniform": [0.9, 0.99]}}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    code = ("import sys\nfrom pathlib import Path\nimport invaders.sweep.spec as spec\n"
            "sweep, trials = spec.load(Path('s.yaml'))\nassert len(trials) == 6, [t.id for t in trials]\n"
            "loaded = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
            "assert 'ray' not in sys.modules, loaded\nprint('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=tool_env(**RAY_ENV), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.unit
def test_the_summary_is_mean_and_iqm_over_seeds_with_seeded_intervals_and_a_corrected_test():
    from types import SimpleNamespace

    from invaders.sweep.spec import Trial
    from invaders.sweep.summary import iqm, markdown, summarize

    seeds = [0, 1, 2, 3]
    scores = {"base": [10.0, 12.0, 11.0, 9.0], "s1": [30.0, 32.0, 29.0, 31.0], "s2": [12.0, 8.0, 100.0, 11.0]}
    trials = [Trial(id=f"{name}-seed{seed}", setting=name, overrides={} if name == "base" else {"k": name},
                    seed=seed, params={}) for name in scores for seed in seeds]
    results = {f"{name}-seed{seed}": {"eval_mean_reward": value, "done": True, "error": None}
               for name, values in scores.items() for seed, value in zip(seeds, values)}
    results["s2-seed3"] = {"error": "RayActorError: the node died", "done": False}
    sweep = SimpleNamespace(name="t", metric="eval_mean_reward", seeds=seeds)
    summary = summarize(sweep, trials, results, alpha=0.05)
    assert summary == summarize(sweep, trials, results, alpha=0.05)  # seeded: the same intervals
    s1, s2 = summary["settings"]["s1"], summary["settings"]["s2"]
    assert s1["mean"] == 30.5 and s1["iqm"] == iqm([30.0, 32.0, 29.0, 31.0]) == 30.5
    assert s1["mean_ci"][0] >= 29.0 and s1["mean_ci"][1] <= 32.0
    assert s2["seeds"] == 3 and s2["mean"] == 40.0  # the failed trial is not scored
    assert summary["best"] == "s2"  # the highest mean, even if one lucky seed made it
    assert not summary["vs_base"]["significant"]  # ... which the test over seeds does not believe
    assert summary["vs_base"]["corrected_alpha"] == 0.025
    assert "s2-seed3 (error)" in markdown(summary)
    results = {k: v for k, v in results.items() if not k.startswith("s2")}
    trials = [t for t in trials if t.setting != "s2"]
    summary = summarize(sweep, trials, results, alpha=0.05)
    assert summary["best"] == "s1" and summary["vs_base"]["significant"]
    assert "**beats the base params**" in markdown(summary)


@pytest.mark.e2e
def test_runs_of_trials_that_ray_ended_from_outside_are_not_left_running(tmp_path):
    """A trial that ASHA stops, or whose last attempt died with its node, is killed by Ray before it can
    end its MLflow run: the driver marks such runs KILLED (with a `sweep.stopped` tag) or FAILED, and
    leaves alone the runs the trials ended themselves."""
    import mlflow

    from invaders.sweep.driver import end_unfinished_runs

    store = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = store.create_experiment("sweep")
    run = {name: store.create_run(experiment).info.run_id for name in ("done", "stopped", "died", "failed")}
    store.set_terminated(run["done"], "FINISHED")
    store.set_terminated(run["failed"], "FAILED")  # an error inside training: the trial marked it
    end_unfinished_runs([{"state": "DONE", "run_id": run["done"]}, {"state": "STOPPED", "run_id": run["stopped"]},
                         {"state": "ERROR", "run_id": run["died"]}, {"state": "ERROR", "run_id": run["failed"]},
                         {"state": "STOPPED", "run_id": None}], store)  # stopped before its first checkpoint
    status = {name: store.get_run(run_id).info.status for name, run_id in run.items()}
    assert status == {"done": "FINISHED", "stopped": "KILLED", "died": "FAILED", "failed": "FAILED"}
    assert store.get_run(run["stopped"]).data.tags["sweep.stopped"] == "early, by the sweep's ASHA scheduler"
    assert "sweep.stopped" not in store.get_run(run["died"]).data.tags
