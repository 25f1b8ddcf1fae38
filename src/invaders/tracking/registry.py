"""The MLflow Model Registry: register trained agents, move the `champion` alias, fetch models by URI.

Each registered version records the evaluation it was judged on: the per-episode scores as
an artifact of its training run (`registry/<name>/v<version>/episodes.csv`, path in the
version tag `eval.rewards_artifact`). A later candidate is compared with those recorded
scores, never with a re-run of the champion.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from invaders.config import PromoteConfig
from invaders.errors import ModelFileError, first_line
from invaders.rl.episodes import read_rewards
from invaders.tracking.promotion import decide
from invaders.tracking.store import (LOGIN_HINT, TrackingError, download, redact, refusal, store_lock, tls_problem,
                                    tracking_uri)

CHAMPION = "champion"
CHALLENGER = "challenger"
REWARDS_TAG = "eval.rewards_artifact"
URI_SCHEMES = ("models:/", "runs:/")


def _client():
    import mlflow

    return mlflow.MlflowClient()


def _failure(exc: Exception) -> str:
    """What went wrong reading from the store, as the user needs to hear it: a missing model is not
    a wrong password, and neither is a server that does not answer."""
    kind, where = refusal(exc), f"the MLflow store {redact(tracking_uri())!r}"
    if tls := tls_problem(exc):
        return f"cannot be read from {where}: {tls}"
    if kind == "not found":
        return f"not found in {where} ({first_line(exc)})"
    if kind == "unauthenticated":
        return f"unauthenticated by {where} ({LOGIN_HINT})"
    if kind == "forbidden":
        return f"forbidden by {where} for user {os.environ.get('MLFLOW_TRACKING_USERNAME')!r}"
    return f"cannot be read from {where} ({first_line(exc)})"


@contextmanager
def model_file(spec: str | Path) -> Iterator[Path]:
    """The `.keras` file of a model given as a path or an MLflow URI (`models:/<name>@<alias>`,
    `models:/<name>/<version>`, `runs:/<run id>/model`), for `rl.model.load_network` (safe mode).

    For a URI the logged model's `data/model.keras` is downloaded into a temporary directory, removed
    after the block; MLflow's own loader is not used, as it would unpickle the custom objects stored
    with the model. Downloading needs no TensorFlow.
    """
    spec = str(spec)
    if not spec.startswith(URI_SCHEMES):
        yield Path(spec)
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri())
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(download(artifact_uri=spec, dst_path=tmp))
        except (MlflowException, OSError) as exc:  # OSError: the requests library's network errors
            raise ModelFileError(f"{spec}: {_failure(exc)}") from None
        path = local / "data" / "model.keras"
        if not path.is_file():
            raise ModelFileError(f"{spec}: not a Keras model logged by this pipeline (no data/model.keras)")
        yield path


def version_by_alias(name: str, alias: str):
    """The version holding `alias`, or None (also when the registered model does not exist yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return _client().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if refusal(exc) == "not found" or "not found" in str(exc):
            return None
        raise


def recorded_rewards(version) -> list[float]:
    """The per-episode scores a version was judged on, as the promote stage recorded them."""
    path = version.tags.get(REWARDS_TAG)
    if not path:
        raise TrackingError(f"model {version.name} version {version.version} has no recorded evaluation (tag"
                            f" {REWARDS_TAG}): give the {CHAMPION} alias to a version the promote stage registered,"
                            " or delete the alias")
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = download(run_id=version.run_id, artifact_path=path, dst_path=tmp)
        except (MlflowException, OSError) as exc:
            raise TrackingError(f"model {version.name} version {version.version}: its recorded evaluation"
                                f" {path!r}: {_failure(exc)}") from None
        return read_rewards(local)


def _candidate(name: str, run_id: str):
    """The version registered from this training run, registering it if there is none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = _client()
    try:  # create, not look then create: another promote may be creating it this very moment
        client.create_registered_model(name, description="DQN agents for Atari Space Invaders; see the promote stage")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        return min(existing, key=lambda v: int(v.version))
    return mlflow.register_model(f"runs:/{run_id}/model", name)


def _record(version, episodes_csv: Path) -> str:
    """Log the evaluation's episodes CSV to the version's run; returns its artifact path."""
    path = f"registry/{version.name}/v{version.version}"
    _client().log_artifact(version.run_id, str(episodes_csv), artifact_path=path)
    return f"{path}/{episodes_csv.name}"


def _tag_value(value: object) -> str:
    return "none" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def _move_alias(name: str, alias: str, version: str) -> str | None:
    """Give `version` the alias and take the other one from it. On a team server only an admin or a
    user with MANAGE on the model may move `champion`: then the reason it was refused, else None."""
    from mlflow.exceptions import MlflowException

    client = _client()
    other = CHALLENGER if alias == CHAMPION else CHAMPION
    try:
        client.set_registered_model_alias(name, alias, version)
        if (held := version_by_alias(name, other)) is not None and held.version == version:
            client.delete_registered_model_alias(name, other)
    except MlflowException as exc:
        if refusal(exc) != "forbidden":
            raise
        return first_line(exc).removeprefix("PERMISSION_DENIED: ")
    return None


def promote(cfg: PromoteConfig, run_id: str, episodes_csv: str | Path, baseline_csv: str | Path) -> dict:
    """Register the training run's model under `cfg.model_name` and give it `champion` or `challenger`.

    `episodes_csv` and `baseline_csv` are the evaluation's and the random baseline's episodes.
    Needs `tracking.connect` first. The candidate is compared with the version holding `champion`
    (its recorded scores) if that is another version, and always with the random baseline. A
    re-evaluated champion that no longer beats the baseline loses the alias. If the registry
    refuses to move an alias (a writer on a team server), the decision says why in `alias_refused`.
    """
    episodes_csv = Path(episodes_csv)
    rewards, baseline = read_rewards(episodes_csv), read_rewards(baseline_csv)
    client = _client()
    name = cfg.model_name
    # Two promotes at once (queued experiments) must not both judge against the same champion.
    with store_lock(tracking_uri()):
        version = _candidate(name, run_id)
        holder = version_by_alias(name, CHAMPION)
        rival = holder if holder is not None and holder.version != version.version else None
        decision = decide(rewards, baseline, None if rival is None else recorded_rewards(rival), cfg.alpha,
                          cfg.min_episodes)
        rewards_path = _record(version, episodes_csv)
        alias = CHAMPION if decision.promote else CHALLENGER
        refused = _move_alias(name, alias, version.version)

    vs_b, vs_c = decision.vs_baseline, decision.vs_champion
    summary = {
        "decision": alias,
        "reason": decision.reason,
        "p_value_baseline": vs_b.p_value,
        "p_value_champion": None if vs_c is None else vs_c.p_value,
        "previous_champion": None if rival is None else str(rival.version),
        "alias_refused": refused,
    }
    for key, value in {**summary, "eval.mean_reward": vs_b.candidate_mean, "eval.episodes": len(rewards),
                       REWARDS_TAG: rewards_path}.items():
        client.set_model_version_tag(name, version.version, key if key.startswith("eval.") else f"promote.{key}",
                                     _tag_value(value))
    for key, value in {**summary, "model_name": name, "version": str(version.version)}.items():
        client.set_tag(run_id, f"promote.{key}", _tag_value(value))
    return {"model_name": name, "version": str(version.version), "run_id": run_id, "alias": alias,
            "alias_refused": refused, "previous_champion": summary["previous_champion"], **decision.to_dict()}
