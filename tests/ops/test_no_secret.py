"""No secret in output: the tiny pipeline against the team server, a one-trial sweep on a Ray cluster with
a token, and `invaders users add`, all with known passwords, token and server key; then every stdout and
stderr, every file under data/, every MLflow param, tag and text artifact of the runs, and Ray's job and
actor info are searched for them."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import BIN, REPO, free_port, make_project, merge, run, tool_env
from test_team_server import ADMIN_PASSWORD, PARAMS, WRITER, WRITER_PASSWORD, TeamServer, no_secret_in

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweep"))
from test_sweep import RayCluster  # noqa: E402

pytestmark = pytest.mark.cluster

SERVER_KEY = "flask-key-known-2f8e61c0"
TEXT = (".txt", ".json", ".csv", ".md", ".yaml", ".yml", ".jsonl", ".sha256", ".log", "")


def ray_info(cluster) -> str:
    """Ray's job table (each job's config, its runtime environment among it) and actor table, as the head's
    GCS keeps them (Ray's state API needs the dashboard, which ray[tune] does not install)."""
    script = ("import json, ray; from ray._private.state import state; from ray.core.generated import gcs_pb2;"
              f" ray.init(address={cluster.address!r}, logging_level='ERROR');"
              " jobs = state._connect_and_get_accessor().get_job_table(skip_submission_job_info_field=False,"
              " skip_is_running_tasks_field=True);"
              " print(json.dumps({'jobs': [str(gcs_pb2.JobTableData.FromString(j)) for j in jobs],"
              " 'actors': [str(a) for a in state.actor_table(None).values()]}))")
    done = subprocess.run([sys.executable, "-c", script], env=tool_env(**cluster.env), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info["jobs"] and info["actors"], info  # the sweep's driver and its trial were there
    assert any("runtime_env" in job for job in info["jobs"]), info["jobs"][:1]
    return json.dumps(info)


def tracked_texts(server, tmp_path) -> list[str]:
    """Every param, tag and text artifact of every run on the server."""
    client = server.client(server.admin())
    texts = []
    for experiment in client.search_experiments():
        for found in client.search_runs([experiment.experiment_id]):
            texts += [json.dumps(found.data.params), json.dumps(found.data.tags)]
            todo = [None]
            while todo:
                for item in client.list_artifacts(found.info.run_id, todo.pop()):
                    if item.is_dir:
                        todo.append(item.path)
                    elif Path(item.path).suffix in TEXT and (item.file_size or 0) < 5_000_000:
                        local = client.download_artifacts(found.info.run_id, item.path, str(tmp_path))
                        texts.append(Path(local).read_text(errors="replace"))
    return texts


def test_no_password_token_or_key_in_any_output(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", SERVER_KEY)  # the server script keeps one given
    root = Path(tempfile.mkdtemp(prefix="invaders-nosecret-"))
    root.chmod(0o755)  # the `postgres` OS user must reach it
    ray_dir = Path(tempfile.mkdtemp(prefix="rn-", dir="/tmp"))  # short: Ray's socket paths
    server, cluster, outputs = TeamServer(root), RayCluster(ray_dir, ray_dir), []
    try:
        server.start()
        cluster._start("head", "head", "--port", str(cluster.port), "--num-cpus", "1", "--include-dashboard=false",
                       "--ray-client-server-port", str(free_port()))
        cluster._wait(1)
        secrets = (ADMIN_PASSWORD, WRITER_PASSWORD, SERVER_KEY, (ray_dir / "auth_token").read_text().strip())

        added = subprocess.run([str(BIN / "invaders"), "users", "add", WRITER, "--role", "writer"], cwd=REPO,
                               input=WRITER_PASSWORD + "\n", capture_output=True, text=True, timeout=300,
                               env={**os.environ, **server.admin()})
        assert added.returncode == 0, added.stderr
        outputs += [added.stdout, added.stderr]

        project = tmp_path / "project"
        project.mkdir()
        make_project(project, merge(yaml.safe_load((REPO / "params.yaml").read_text()), PARAMS), repro=False)
        piped = run(["dvc", "repro"], project, **server.writer())
        outputs += [piped.stdout, piped.stderr]

        (project / "sweeps").mkdir(exist_ok=True)
        (project / "sweeps" / "secret.yaml").write_text("name: secret\nparams: presets/smoke.yaml\nseeds: [0]\n")
        swept = run([str(BIN / "invaders"), "sweep", "sweeps/secret.yaml", "--address", cluster.address], project,
                    **server.writer(), **cluster.env)
        outputs += [swept.stdout, swept.stderr]

        outputs += [p.read_bytes().decode(errors="replace") for p in (project / "data").rglob("*") if p.is_file()]
        outputs += tracked_texts(server, tmp_path / "artifacts")
        outputs.append(ray_info(cluster))
        outputs.append(server.log())
    finally:
        cluster.stop()
        server.stop()
        shutil.rmtree(ray_dir, ignore_errors=True)
        subprocess.run(["rm", "-rf", str(root)], check=False)
    for secret in secrets:  # the team server's passwords, its key and Ray's token: where, if anywhere
        assert not [i for i, text in enumerate(outputs) if secret in text], \
            f"{secret[:6]}... found in: " + "; ".join(text[max(0, text.find(secret) - 200):text.find(secret)][-200:]
                                                    for text in outputs if secret in text)
    no_secret_in(*outputs)  # the team server tests' own check, the reader's password too
