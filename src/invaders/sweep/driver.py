"""Sweeps: many tracked trainings (settings × seeds) on a Ray cluster, and an honest summary of them.

This module drives a sweep: it checks the cluster, starts the sweep's parent MLflow run, runs the
trials with Ray Tune and writes the summary. The sweep file and its trials are `invaders.sweep.spec`
(validated before Ray starts), a trial is `invaders.sweep.trial` (a real pipeline run through the
stage functions, which a node's death costs only time), the live table is `invaders.sweep.progress`
and the summary `invaders.sweep.summary`. Ray is imported only when the trials run.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
from pathlib import Path

import yaml

from invaders import files
from invaders.config import Params
from invaders.errors import first_line
from invaders.sweep.spec import Sweep, SweepError, SweepInterrupted, Trial, load

SWEEPS = Path("data/sweeps")


# --- the cluster --------------------------------------------------------------------------------------

def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


PROBE_SECONDS = 5  # for each of the checks' calls to the head: a cluster answers in milliseconds
OPEN_ALLOWED = "none (allowed by --allow-unauthenticated-cluster)"


def check_cluster(address: str | None, uri: str, allow_unauthenticated: bool = False) -> str:
    """An existing cluster must answer at `address`, refuse a connection that carries no token (unless
    `allow_unauthenticated`), take this driver's token, and its nodes must reach the tracking store.
    Nothing runs on the cluster: each check is one call to its head. Returns the parent run's
    `sweep.cluster_auth` tag."""
    from invaders.compat import ray as ray_compat
    from invaders.tracking.store import redact

    if address is None:
        if ray_compat.local_instance_auth() == "token":
            return "token (the sweep's own Ray instance, on this machine)"
        return ("none (the sweep's own Ray instance, on this machine, with"
                f" RAY_AUTH_MODE={os.environ['RAY_AUTH_MODE']})")
    if _is_local_store(uri):
        raise SweepError(f"a sweep on a Ray cluster (--address {address}) needs a tracking server that every node"
                         f" can reach (MLFLOW_TRACKING_URI=http://host:port); {redact(uri)!r} is a file on this"
                         " machine (run without --address for a sweep on this machine only)")
    target = address
    if address == "auto":
        target = ray_compat.local_cluster()
        if target is None:
            raise SweepError("--address auto: no Ray cluster runs on this machine (start one with"
                             " `ray start --head --port PORT`, or give the head's HOST:PORT)")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"--address: {address!r}: expected HOST:PORT of a Ray cluster's head (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        raise SweepError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc});"
                         " start one with `ray start --head --port PORT`") from None
    try:
        # As a stranger would: a call that carries no token at all.
        open_to_anyone = ray_compat.gcs_call(target, PROBE_SECONDS)
        if open_to_anyone and not allow_unauthenticated:
            raise SweepError(f"--address {address}: this Ray cluster accepts connections without a token: anyone"
                             " who reaches its port can run code on its nodes (and read the tracking login the"
                             " trials get); start every node with RAY_AUTH_MODE=token and one shared token (see"
                             " docs/sweeps.md, On several machines), or pass --allow-unauthenticated-cluster"
                             " for a cluster you know is isolated")
        state, token = ray_compat.driver_token(auto=address == "auto")  # what ray.init will send
        if open_to_anyone or ray_compat.gcs_call(target, PROBE_SECONDS, token):
            return OPEN_ALLOWED if open_to_anyone else "token"
    except ray_compat.ClusterUnusable as exc:
        raise SweepError(f"--address {address}: {exc}") from None
    fix = ("run the driver with RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH=FILE, FILE a copy (mode 0600) of the"
           " token file the cluster's nodes were started with")
    if state == "sent":
        raise SweepError(f"--address {address}: the cluster refused this driver's token (from"
                         f" {ray_compat.token_source()}): it is not the one the cluster's nodes were started"
                         f" with; {fix}")
    if state == "off":
        raise SweepError(f"--address {address}: the cluster requires a token and this driver sends none"
                         f" (RAY_AUTH_MODE is not 'token', so the one in {ray_compat.token_source()} is not"
                         f" sent); {fix}")
    raise SweepError(f"--address {address}: the cluster requires a token and this driver has none; {fix}")

# --- the driver ---------------------------------------------------------------------------------------

def run(path: Path, address: str | None = None, resume: bool = False, write_best: Path | None = None,
        allow_unauthenticated_cluster: bool = False) -> dict:
    """`invaders sweep`: validate, run every trial on the cluster, summarize; returns the summary."""
    from invaders.tracking.store import connect, start_run, tracking_uri

    sweep, trials = load(path)
    base = Params.model_validate(trials[0].params)
    address = address or os.environ.get("RAY_ADDRESS") or None
    uri = tracking_uri()
    cluster_auth = check_cluster(address, uri, allow_unauthenticated_cluster)
    out = (SWEEPS / sweep.name).resolve()
    state = out / "sweep.json"
    if resume and not state.is_file():
        raise SweepError(f"--resume: {out} holds no sweep to continue (run it without --resume first)")
    if not resume and state.exists():
        raise SweepError(f"{out}: an earlier sweep named {sweep.name!r} is there: continue it with --resume,"
                         " or remove the directory to start again")
    storage = sweep.storage or (out / "ray").as_uri()

    os.environ["MLFLOW_TRACKING_URI"] = uri  # absolute: a trial's working directory is Ray's, not ours
    experiment_id = connect(base.mlflow.experiment)
    import mlflow

    if resume:
        parent = files.read_json(state)["parent_run_id"]
        start_run(experiment_id, parent, sweep.name, {})
    else:
        parent = start_run(experiment_id, None, f"sweep-{sweep.name}", {"stage": "sweep", "sweep": sweep.name})
        mlflow.MlflowClient().log_artifact(parent, str(path))
        for key, value in {"sweep.params": sweep.params, "sweep.base": sweep.base, "sweep.seeds": sweep.seeds, "sweep.metric": sweep.metric,
                           "sweep.trials": len(trials), "sweep.settings": len(trials) // len(sweep.seeds),
                           "sweep.cpus_per_trial": sweep.resources.cpus}.items():
            mlflow.MlflowClient().log_param(parent, key, str(value))
        files.write_json(state, {"parent_run_id": parent, "sweep_file": str(path)})
    mlflow.MlflowClient().set_tag(parent, "sweep.cluster_auth", cluster_auth)  # this driver's cluster

    results = _tune(sweep, trials, out, storage, address, uri, parent, resume)

    from invaders.sweep.summary import summarize, write

    summary = summarize(sweep, trials, results, alpha=base.promote.alpha)
    write(summary, out)
    end_unfinished_runs(summary["trials"], mlflow.MlflowClient())
    failed = [t["id"] for t in summary["trials"] if t["state"] == "ERROR"]
    with mlflow.start_run(run_id=parent):
        for name in ("summary.json", "summary.md", "scores.png"):
            mlflow.log_artifact(str(out / name))
        mlflow.log_metrics({"trials": len(trials), "trials_failed": len(failed),
                            "trials_scored": sum(t["score"] is not None for t in summary["trials"])})
        if summary["best"] is not None:
            best = summary["settings"][summary["best"]]
            mlflow.log_metrics({"best_mean": best["mean"], "best_iqm": best["iqm"]})
        mlflow.set_tags({"sweep.best": summary["best"], "sweep.beats_base": summary["vs_base"]["significant"],
                         "mlflow.note.content": (out / "summary.md").read_text()})
    mlflow.MlflowClient().set_terminated(parent, "FAILED" if failed else "FINISHED")
    print((out / "summary.md").read_text())
    if write_best and summary["best"] is not None:
        best_params = next(t for t in trials if t.setting == summary["best"]).params | {"seed": base.seed}
        files.write_text(write_best, yaml.safe_dump(Params.model_validate(best_params).model_dump(), sort_keys=False))
        print(f"sweep: wrote the best setting's params ({summary['best']}) to {write_best}")
    if failed:  # the summary covers the others; Ray's error files say what happened
        print(f"sweep: {len(failed)} trials failed after their restarts ({', '.join(failed)}); their errors are in"
              f" {storage}/{sweep.name}/<trial>/error.txt", file=sys.stderr)
        raise SystemExit(1)
    return summary


def end_unfinished_runs(trials: list[dict], client) -> None:
    """Ray ends a trial that ASHA stops, or whose last attempt died with its node, by killing its
    process, so its MLflow run would stay RUNNING for good: mark it KILLED (stopped early) or FAILED."""
    for trial in trials:
        if trial["state"] == "DONE" or not trial["run_id"]:
            continue
        if client.get_run(trial["run_id"]).info.status != "RUNNING":
            continue  # the trial ended it itself (an error inside training)
        if trial["state"] == "STOPPED":
            client.set_tag(trial["run_id"], "sweep.stopped", "early, by the sweep's ASHA scheduler")
        client.set_terminated(trial["run_id"], "KILLED" if trial["state"] == "STOPPED" else "FAILED")


def _tune(sweep: Sweep, trials: list[Trial], out: Path, storage: str, address: str | None, uri: str, parent: str,
          resume: bool) -> dict[str, dict]:
    """Run the trials with Ray Tune; each trial's last result (or its error) by trial id."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own table instead of Ray's output
    import ray
    from ray import tune

    from invaders.sweep.progress import ProgressTable
    from invaders.sweep.trial import ray_trial

    # The trials' tracking: the URI (absolute) from this environment, in the job's runtime environment; the
    # login, if any, through Ray's object store (`tune.with_parameters`): the runtime environment is in Ray's
    # job table for anyone who lists jobs, and the trials' configs are on disk.
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_SERVER_CERT_PATH",
                                      "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL",
                                      "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT",
                                      "TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS") if k in os.environ}
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    login = {k: os.environ[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
             if k in os.environ}
    ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING", configure_logging=True)
    try:
        resources = {"cpu": sweep.resources.cpus}
        if sweep.resources.memory_gb:
            resources["memory"] = int(sweep.resources.memory_gb * 2**30)
        trainable = tune.with_resources(tune.with_parameters(ray_trial, login=login), resources)
        table = ProgressTable(trials)
        common = {"out": str(out / "trials"), "cpus": sweep.resources.cpus, "parent_run_id": parent,
                  "sweep": sweep.name}
        experiment = f"{storage.rstrip('/')}/{sweep.name}"
        if resume and tune.Tuner.can_restore(experiment):
            tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
        else:
            scheduler = None
            if sweep.asha:
                from ray.tune.schedulers import ASHAScheduler

                scheduler = ASHAScheduler(time_attr="step", metric="val_mean_reward", mode="max",
                                          max_t=max(t.params["train"]["steps"] for t in trials),
                                          grace_period=sweep.asha.grace_steps,
                                          reduction_factor=sweep.asha.reduction_factor)
            tuner = tune.Tuner(
                trainable,
                param_space={**common, "trial": tune.grid_search([t.model_dump() for t in trials])},
                tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=False,
                                            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
                run_config=tune.RunConfig(
                    name=sweep.name, storage_path=storage, verbose=0,
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                    failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
                    callbacks=[table]))
        before = signal.getsignal(signal.SIGINT)
        grid = tuner.fit()
        # Tune puts back the SIGINT handler it replaced only when a signal stopped it (Ctrl-C), after
        # saving its state and ending the running trials, which it then reports as terminated.
        stopped = signal.getsignal(signal.SIGINT) is before
        signal.signal(signal.SIGINT, before)
        results = {}
        for result in grid:
            trial_id = result.config["trial"]["id"]
            results[trial_id] = {**(result.metrics or {}), "error": None if result.error is None else
                                 first_line(result.error, 300)}
        if stopped and any(not r.get("done") and not r["error"] for r in results.values()):
            raise SweepInterrupted(f"sweep {sweep.name!r} stopped before its trials ended; continue it with"
                                   " `invaders sweep ... --resume`")
        final = ProgressTable(trials)  # the table as it ends (a resumed sweep's callback is Ray's copy)
        for trial_id, r in results.items():
            final.rows[trial_id].update(state="ERROR" if r["error"] else "DONE" if r.get("done") else "STOPPED",
                                        node=r.get("node") or "", step=r.get("step") or 0,
                                        val=r.get("val_mean_reward", math.nan))
        final.show(force=True)
        return results
    finally:
        ray.shutdown()


def _trial_name(trial) -> str:
    return trial.config["trial"]["id"]
