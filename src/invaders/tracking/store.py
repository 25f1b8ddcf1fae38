"""MLflow: where runs go, and checking that the store answers before any long work starts."""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

from invaders.errors import UserError, first_line

# The SQLite store at the project root. DVC gives stages the root in DVC_ROOT; a queued
# experiment (`dvc exp run --queue`) runs in a temporary copy, but DVC_ROOT still names the
# original project, so its runs land in the same store as everyone else's.
STORE_FILE = "mlflow.db"

# MLflow 3 records what an experiment is for in this tag; "custom_model_development" is its
# "Machine learning" kind (the UI's runs table, not the GenAI pages for traces).
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
# The run's output hashes, in `sha256sum` format: the artifact and a tag with its digest.
HASHES = "outputs.sha256"
CA_VAR = "MLFLOW_TRACKING_SERVER_CERT_PATH"  # MLflow's: the CA certificate (PEM) a client trusts for HTTPS


class TrackingError(UserError):
    pass


class TrackingPending(TrackingError):
    """The outputs are written but the tracking server did not take all of the run: exit code 3."""

    exit_code = 3


def tracking_uri() -> str:
    """The tracking store every entry point uses (each asks this first). An empty MLFLOW_TRACKING_SERVER_CERT_PATH,
    as a CI secret that is not set gives, goes: MLflow would pass it on as `verify=""`, checking no certificate."""
    if os.environ.get(CA_VAR) == "":
        del os.environ[CA_VAR]
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = Path(os.environ.get("DVC_ROOT") or ".").resolve()
    return f"sqlite:///{root / STORE_FILE}"


def _artifact_root() -> str | None:
    """For the default store, `mlruns/` next to it, whoever creates the experiment (MLflow would
    use its own working directory, a throw-away copy for a queued experiment)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None  # the server's or the user's choice
    return (Path(tracking_uri()[len("sqlite:///"):]).parent / "mlruns").as_uri()


@contextmanager
def store_lock(uri: str):
    """Serialises what two processes must not do at once on one SQLite store: creating (and
    migrating) it, which collides, and a promote decision (read the champion, move the alias).

    Other writes need no lock: MLflow's own SQLite busy timeout (20 s) handles concurrent writers.
    A server's store is shared by many machines, where a file lock means nothing: a no-op there.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(uri[len("sqlite:///"):]).with_suffix(".db.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "w")
    except OSError as exc:
        raise TrackingError(f"MLflow tracking URI {uri!r} is not usable: {lock_path}: {exc.strerror}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def no_retries(timeout: int | None = 10):
    """For a first request to a server: no retries with back-off, and a short timeout (or MLflow's); so a
    server that does not answer, refuses, or is not trusted fails in seconds, not after minutes of retrying."""
    return _env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", **({} if timeout is None else
                                                        {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout)}))


def redact(uri: str) -> str:
    """`uri` without a password in it (`https://user:secret@host` -> `https://user:***@host`)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


LOGIN_HINT = "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"


def tls_problem(exc: BaseException) -> str | None:
    """Why the client would not talk to an HTTPS server, in one line naming the fix; None if `exc` is not
    about the server's certificate. MLflow words these as any failed request; only the text tells."""
    text, ca = str(exc), os.environ.get(CA_VAR)
    if "Could not find a suitable TLS CA certificate bundle" in text:
        return f"{CA_VAR} names no readable file ({ca!r}): give the path of the CA's certificate (PEM)"
    if "CERTIFICATE_VERIFY_FAILED" not in text:
        return None
    found = re.search(r"certificate verify failed: (.*?)\.?\s*(?:\(_ssl\.c|'\)|$)", text)
    detail = found.group(1) if found else "certificate verify failed"
    if "mismatch" in detail:
        return f"its TLS certificate is not for this host ({detail}): use a host name the certificate names"
    if "expired" in detail:
        return f"its TLS certificate has expired ({detail}): the server needs a new one"
    if ca:
        return f"its TLS certificate is not trusted ({detail}): the CA certificate in {CA_VAR} ({ca}) did not sign it"
    return f"its TLS certificate is not trusted ({detail}); set {CA_VAR} to the CA's certificate"


# What a server answers that the same request sent again may change: timeouts, conflicts, overload.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 499})


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status an error stands for: an MlflowException's (the network's failures are 500,
    INTERNAL_ERROR), or the answer's in a `requests.HTTPError` (what artifact uploads raise); else None."""
    from mlflow.exceptions import MlflowException
    from requests import HTTPError

    if isinstance(exc, MlflowException):
        return exc.get_http_status_code()
    if isinstance(exc, HTTPError) and exc.response is not None:
        return exc.response.status_code
    return None


def permanent(exc: BaseException) -> bool:
    """Whether sending the same request again cannot work until someone changes something: a refusal
    (HTTP 4xx: a login, a permission, a malformed request, a run that is gone), a certificate the client
    does not trust, or a bug in the sender (anything that is neither MLflow's error nor the network's).
    Not the network's failures (refused, reset, timed out: MLflow reports them as INTERNAL_ERROR), 5xx, 429."""
    if tls_problem(exc):
        return True
    if (status := _http_status(exc)) is not None:
        return 400 <= status < 500 and status not in RETRY_STATUSES
    return not isinstance(exc, OSError)


def stopped_by(exc: BaseException, what: str) -> str:
    """What stopped sending `what` for good, in one line: the server's refusal as it gave it (`the tracking
    server refused the run's records: HTTP 403 PERMISSION_DENIED: Permission denied`), its certificate, or a
    bug's own words."""
    if tls := tls_problem(exc):
        return f"{what} cannot be sent: " + tls.replace("its TLS", "the tracking server's TLS", 1)
    if _http_status(exc) is not None:
        return f"the tracking server refused {what}: {server_answer(exc)}"
    return f"sending {what} failed: {type(exc).__qualname__}: {first_line(exc)} (a bug)"


def server_answer(exc) -> str:
    """A refusal in one line, as the server gave it: `HTTP 403 PERMISSION_DENIED: Permission denied` (an
    MlflowException; or the client's own, if it refused before sending), `HTTP 403 Forbidden: Permission
    denied` (an artifact upload's requests.HTTPError)."""
    from mlflow.exceptions import MlflowException, RestException

    if not isinstance(exc, MlflowException):
        response = exc.response
        return f"HTTP {response.status_code} {response.reason}: {first_line(response.text or '-')}"

    message = exc.json.get("message", exc.message) if isinstance(exc, RestException) else exc.message
    answered = re.match(r"API request to endpoint \S+ failed with error code (\d+) != \d+\. Response body: '(.*)'\Z",
                        str(message), re.S)
    if answered:  # a text answer (MLflow's auth app answers so)
        return f"HTTP {answered.group(1)} {exc.error_code}: {first_line(answered.group(2))}"
    if isinstance(exc, RestException):
        return f"HTTP {exc.get_http_status_code()} {exc.error_code}: {first_line(message)}"
    return f"{exc.error_code}: {first_line(message)}"  # refused by the client itself, before sending


def refusal(exc: Exception) -> str | None:
    """What an MLflow error means for the user: "unauthenticated" (no or a wrong login), "forbidden" (the
    login may not do this), "not found", or None (anything else: the error's own first line says it).
    Every explanation of a store's refusal (connecting, the registry, users) starts from this one."""
    code = getattr(exc, "error_code", None)
    if code is None:  # an artifact transfer's requests.HTTPError says it by its status alone
        code = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST"}.get(
            _http_status(exc))
    if code == "UNAUTHENTICATED":
        return "unauthenticated"
    if code == "PERMISSION_DENIED":
        return "forbidden"
    # A missing model is RESOURCE_DOES_NOT_EXIST; a missing alias, INVALID_PARAMETER_VALUE "... not found".
    if code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc)):
        return "not found"
    return None


def _refusal(exc: Exception, uri: str, experiment: str) -> str:
    """Why the store refused us, in one line, naming the fix; never the password."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if tls := tls_problem(exc):
        return tls
    kind = refusal(exc)
    if kind == "unauthenticated":
        if not user and not os.environ.get("MLFLOW_TRACKING_TOKEN"):
            return f"unauthenticated: the server needs a login ({LOGIN_HINT})"
        return f"unauthenticated: wrong user name or password for user {user!r}"
    if kind == "forbidden":
        return (f"forbidden: user {user!r} may not write to experiment {experiment!r} (a writer needs EDIT on it:"
                " an admin runs `invaders users add NAME --role writer`)")
    return first_line(exc)


def connect(experiment: str) -> str:
    """Point MLflow at the tracking store and select `experiment`; returns its id.

    An unreachable or wrong store, bad credentials or a user who may not write there fail here,
    within seconds, instead of after training: setting the experiment's kind (model training, or
    the kind it has) is the write that proves the user may write.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    uri, artifact_root = tracking_uri(), _artifact_root()
    mlflow.set_tracking_uri(uri)  # which also sets MLFLOW_TRACKING_URI
    # Only for these first calls: no retries with back-off, a short timeout.
    with no_retries(), store_lock(uri):
        try:
            found = mlflow.get_experiment_by_name(experiment)
            if found is None:
                mlflow.create_experiment(experiment, artifact_location=artifact_root,
                                         tags={EXPERIMENT_KIND: MODEL_TRAINING})
            else:  # made before this tag was set, or by hand; a kind someone chose stays
                mlflow.MlflowClient().set_experiment_tag(found.experiment_id, EXPERIMENT_KIND,
                                                         found.tags.get(EXPERIMENT_KIND, MODEL_TRAINING))
            return mlflow.set_experiment(experiment).experiment_id
        # The server's answers and the network's failures (OSError), and a SQLite file that is not MLflow's.
        except (MlflowException, OSError, SQLAlchemyError) as exc:
            raise TrackingError(f"MLflow tracking URI {redact(uri)!r} is not usable: {_refusal(exc, uri, experiment)}") from None


def ui_link(base_url: str, experiment_id: str) -> str:
    """The experiment in the MLflow UI at `base_url`, opening on its training runs. MLflow 3.17's UI
    picks an experiment's first page by its sidebar switch (GenAI or Model training, kept by the
    browser, GenAI at first) rather than by the experiment's kind, so the link sets the switch."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def experiment_link(experiment: str) -> str:
    """The experiment's link on the tracking server in MLFLOW_TRACKING_URI (the server itself if the
    experiment is not there yet); reads only."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking_uri()
    with no_retries():
        try:
            found = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
        except (MlflowException, OSError) as exc:
            raise TrackingError(f"MLflow tracking URI {redact(uri)!r} is not usable: {_refusal(exc, uri, experiment)}"
                                ) from None
    return redact(uri) if found is None else ui_link(redact(uri), found.experiment_id)


def download(**where) -> str:
    """`mlflow.artifacts.download_artifacts` without its progress bars (small files; clean output)."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return mlflow.artifacts.download_artifacts(**where)


def log_output_hashes(*paths: str | Path) -> None:
    """Record each output's SHA-256 in the active run, so a rerun can be checked against it: the
    artifact `outputs.sha256` (`sha256sum -c outputs.sha256` in the project checks the files), which
    gathers the outputs of every stage that logs to the run, and the tag `outputs.sha256`, the
    listing's own digest: runs with the same tag wrote the same outputs."""
    import hashlib

    import mlflow

    from invaders.files import sha256

    run_id = mlflow.active_run().info.run_id
    listing = {}
    if any(a.path == HASHES for a in mlflow.MlflowClient().list_artifacts(run_id)):
        with tempfile.TemporaryDirectory() as tmp:
            for line in Path(download(run_id=run_id, artifact_path=HASHES, dst_path=tmp)).read_text().splitlines():
                digest, path = line.split("  ", 1)
                listing[path] = digest
    listing.update({Path(p).as_posix(): sha256(p) for p in paths})
    text = "".join(f"{digest}  {path}\n" for path, digest in sorted(listing.items()))
    mlflow.log_text(text, HASHES)
    mlflow.set_tag(HASHES, hashlib.sha256(text.encode()).hexdigest())


def run_exists(run_id: str) -> bool:
    """Whether the store holds this run, undeleted (a killed run may be resumed in it)."""
    import mlflow

    try:
        return mlflow.MlflowClient().get_run(run_id).info.lifecycle_stage == "active"
    except mlflow.exceptions.MlflowException:
        return False


def start_run(experiment_id: str, run_id: str | None, name: str, tags: dict[str, str]) -> str:
    """A new run in the experiment (with MLflow's usual source, user and git tags), or the killed
    run `run_id` running again. Returns its id; nothing about it is active in this process."""
    import mlflow
    from mlflow.tracking.context.registry import resolve_tags

    client = mlflow.MlflowClient()
    if run_id:
        client.update_run(run_id, status="RUNNING")
        return run_id
    return client.create_run(experiment_id, run_name=name, tags=resolve_tags(tags)).info.run_id


def end_run(run_id: str, status: str) -> None:
    """Mark a run that stopped early FAILED or KILLED, if the server answers (a kill -9 marks nothing)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.MlflowClient().set_terminated(run_id, status)
    except (MlflowException, OSError):
        pass


def metrics_sink(outbox, resumed_run_id: str | None = None):
    """`sink(step, metrics)` into the run's outbox. Resuming a killed run, it skips the points the
    run already has: those logged between its last checkpoint and the kill, which the resumed
    training computes again, with the same values."""
    import mlflow

    client = mlflow.MlflowClient()
    last: dict[str, int] = {}
    if resumed_run_id:
        for key in client.get_run(resumed_run_id).data.metrics:
            last[key] = max(m.step for m in client.get_metric_history(resumed_run_id, key))

    def sink(step: int, metrics: dict[str, float]) -> None:
        fresh = {key: value for key, value in metrics.items() if step > last.get(key, -1)}
        if fresh:
            outbox.log_metrics(fresh, step=step)

    return sink
