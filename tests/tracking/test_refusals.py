"""Refusals are not outages: the outbox retries what may pass (the network, 5xx, 429) and stops at what
will not (401, 403, 400, 404, an untrusted certificate, a bug in the sender), keeping every record; the
train stage then exits 3 at once, naming the server's answer. The exceptions are MLflow's own, made from
the answers a server gives; the real team server refusing a writer is in tests/ops/test_team_server.py."""

import json
import time

import pytest
import requests
from mlflow.exceptions import MlflowException, RestException
from mlflow.utils.request_utils import augmented_raise_for_status
from mlflow.utils.rest_utils import verify_rest_response

from invaders.stages import train as train_stage
from invaders.tracking import outbox as outbox_module
from invaders.tracking.outbox import Outbox, read_unsent
from invaders.tracking.store import TrackingPending

pytestmark = pytest.mark.unit

URL = "http://127.0.0.1:5000/api/2.0/mlflow/runs/log-batch"


def answered(status: int, body: str) -> MlflowException:
    """What MLflow's client raises for this answer from the server."""
    response = requests.Response()
    response.status_code, response._content = status, body.encode()
    try:
        verify_rest_response(response, "/api/2.0/mlflow/runs/log-batch")
    except MlflowException as exc:
        return exc
    raise AssertionError("not an error")


def uploaded(status: int, reason: str, body: str) -> requests.HTTPError:
    """What MLflow's artifact upload raises for this answer (requests' own error, not MLflow's)."""
    response = requests.Response()
    response.status_code, response.reason, response._content = status, reason, body.encode()
    response.url = "https://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/history.csv"
    try:
        augmented_raise_for_status(response)
    except requests.HTTPError as exc:
        return exc
    raise AssertionError("not an error")


def network(reason: str) -> MlflowException:
    """What MLflow's client raises when the request got no answer (it drops the cause's type)."""
    return MlflowException(f"API request to {URL} failed with exception {reason}")


def rest(code: str, message: str) -> RestException:
    return RestException({"error_code": code, "message": message})


class Client:
    """log_batch raises the given answers one by one, then takes everything."""

    def __init__(self, *answers: BaseException):
        self.answers, self.calls, self.taken = list(answers), 0, []

    def log_batch(self, run_id, metrics, params, tags, synchronous):
        self.calls += 1
        if self.answers:
            raise self.answers.pop(0)
        self.taken += [m.step for m in metrics]


def outbox_with(client: Client, tmp_path, lines: list[str]) -> Outbox:
    outbox = Outbox("run", tmp_path / "spill.jsonl", echo=lines.append)
    outbox._client = client  # before the first record: the thread has sent nothing yet
    return outbox


def wait_for(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def short_pauses(monkeypatch):
    monkeypatch.setattr(outbox_module, "PAUSES", (0.05,))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # for the client the fake replaces


REFUSED = "tracking: the tracking server refused the run's records: "
KEPT = "; keeping them for the next run of the stage, training goes on"


@pytest.mark.parametrize("answer, line", [
    (answered(403, "Permission denied"), REFUSED + "HTTP 403 PERMISSION_DENIED: Permission denied" + KEPT),
    (answered(401, "You are not authenticated. Please see https://www.mlflow.org/docs/latest/auth/index.html"),
     REFUSED + "HTTP 401 UNAUTHENTICATED: You are not authenticated. Please see"
               " https://www.mlflow.org/docs/latest/auth/index.html" + KEPT),
    (rest("INVALID_PARAMETER_VALUE", "The run r must be in the 'active' state. Current state is deleted."),
     REFUSED + "HTTP 400 INVALID_PARAMETER_VALUE: The run r must be in the 'active' state. Current state is deleted."
     + KEPT),
    (rest("RESOURCE_DOES_NOT_EXIST", "Run with id=r not found"),
     REFUSED + "HTTP 404 RESOURCE_DOES_NOT_EXIST: Run with id=r not found" + KEPT),
    (MlflowException.invalid_parameter_value("Invalid value nan for metric 'x'"),  # the client's own, before sending
     REFUSED + "INVALID_PARAMETER_VALUE: Invalid value nan for metric 'x'" + KEPT),
    (network("HTTPSConnectionPool(host='h', port=443): Max retries exceeded (Caused by SSLError("
             "SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get"
             " local issuer certificate (_ssl.c:1006)')))"),
     "tracking: the run's records cannot be sent: the tracking server's TLS certificate is not trusted (unable to get"
     " local issuer certificate); set MLFLOW_TRACKING_SERVER_CERT_PATH to the CA's certificate" + KEPT),
    (TypeError("must be real number, not str"),
     "tracking: sending the run's records failed: TypeError: must be real number, not str (a bug)" + KEPT),
], ids=["403", "401", "400 deleted run", "404 run gone", "malformed", "untrusted", "bug"])
def test_a_refusal_stops_the_sending_and_keeps_every_record(tmp_path, monkeypatch, answer, line):
    """After an outage (retried), a refusal: one line saying so, no more tries, every record kept in order,
    and closing does not wait for a server that answered."""
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH", raising=False)
    lines: list[str] = []
    client = Client(network("('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))"), answer)
    outbox = outbox_with(client, tmp_path, lines)
    outbox.log_metrics({"x": 0.0}, step=0)
    wait_for(lambda: outbox.refused is not None)
    for step in range(1, 5):
        outbox.log_metrics({"x": float(step)}, step=step)
    time.sleep(0.2)  # a sender that went on would try these
    started = time.monotonic()
    unsent = outbox.close(wait=60)
    assert time.monotonic() - started < 1
    assert [r["step"] for r in unsent] == [0, 1, 2, 3, 4] and client.calls == 2 and client.taken == []
    assert outbox.refused is answer
    assert lines[0].startswith("tracking: the server does not answer (") and lines[1:] == [line]


@pytest.mark.parametrize("answer", [
    network("HTTPConnectionPool(host='h', port=5000): Max retries exceeded (Caused by NewConnectionError("
            "'Failed to establish a new connection: [Errno 111] Connection refused'))"),
    MlflowException(f"API request to {URL} failed with timeout exception Read timed out."),
    ConnectionResetError(104, "Connection reset by peer"),
    rest("INTERNAL_ERROR", "the database is restarting"),
    answered(502, "<html>Bad Gateway</html>"),
    answered(503, "Service Unavailable"),
    answered(429, "Too Many Requests"),
    rest("REQUEST_LIMIT_EXCEEDED", "slow down"),
    rest("RESOURCE_CONFLICT", "a concurrent update"),
], ids=["refused", "timeout", "reset", "500", "502", "503", "429", "429 json", "409"])
def test_what_may_pass_is_retried(tmp_path, answer):
    lines: list[str] = []
    client = Client(answer, answer)
    outbox = outbox_with(client, tmp_path, lines)
    for step in range(3):
        outbox.log_metrics({"x": float(step)}, step=step)
    wait_for(lambda: outbox.pending == 0)
    assert outbox.close(wait=5) == [] and outbox.refused is None
    assert client.taken == [0, 1, 2] and client.calls >= 3
    assert lines[0].startswith("tracking: the server does not answer (") and "is back after" in lines[1]


@pytest.fixture
def stage_out(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "wanda")
    monkeypatch.setattr(train_stage, "FLUSH_WAIT", 60.0)
    return tmp_path / "train"


def test_the_stage_exits_3_at_once_naming_the_refusal(tmp_path, stage_out, monkeypatch):
    """Training over, the records refused: no waiting for the server, the records kept for a rerun, one
    line naming the answer and the fix; the run's artifacts are not tried."""
    monkeypatch.setattr(train_stage, "_finish_run", lambda *args: pytest.fail("the artifacts were tried"))
    lines: list[str] = []
    outbox = outbox_with(Client(answered(403, "Permission denied")), tmp_path, lines)
    outbox.log_params({"train.steps": 300})
    for step in range(3):
        outbox.log_metrics({"x": float(step)}, step=step)
    wait_for(lambda: outbox.refused is not None)
    started = time.monotonic()
    with pytest.raises(TrackingPending) as pending:
        train_stage._deliver(outbox, "fingerprint", tmp_path / "model.keras", stage_out, "revoked")
    assert time.monotonic() - started < 5 and pending.value.exit_code == 3
    assert str(pending.value) == (
        "train: outputs written, but the tracking server refused the run's records: HTTP 403 PERMISSION_DENIED:"
        " Permission denied (user 'wanda' needs EDIT on experiment 'revoked'); 4 records and the run's artifacts are"
        f" kept in {stage_out / 'unsent-tracking.jsonl'}; run the stage again once that is fixed (nothing is trained"
        " again)")
    header, records = read_unsent(stage_out / "unsent-tracking.jsonl")
    assert header == {"run_id": "run", "fingerprint": "fingerprint"}
    assert [r["kind"] for r in records] == ["params", "metrics", "metrics", "metrics"]
    assert json.loads((stage_out / "unsent-tracking.jsonl").read_text().splitlines()[2])["step"] == 0


@pytest.mark.parametrize("answer, says", [
    (answered(403, "Permission denied"), "HTTP 403 PERMISSION_DENIED: Permission denied"),
    (uploaded(403, "Forbidden", "Permission denied"), "HTTP 403 Forbidden: Permission denied"),  # an artifact's
], ids=["run", "artifact"])
def test_artifacts_refused_are_not_sent_again_within_the_wait(tmp_path, stage_out, monkeypatch, answer, says):
    """The records sent, the artifacts refused: exit 3 at once (an outage there is retried within the wait)."""
    tries = []

    def refuse(*args):
        tries.append(time.monotonic())
        raise answer

    monkeypatch.setattr(train_stage, "_finish_run", refuse)
    outbox = outbox_with(Client(), tmp_path, [])
    outbox.log_metrics({"x": 1.0}, step=1)
    with pytest.raises(TrackingPending) as pending:
        train_stage._deliver(outbox, "fingerprint", tmp_path / "model.keras", stage_out, "revoked")
    assert str(pending.value).startswith(f"train: outputs written, but the tracking server refused the run's artifacts:"
                                         f" {says} (user 'wanda' needs EDIT on experiment 'revoked'); 0 records")
    assert len(tries) == 1 and read_unsent(stage_out / "unsent-tracking.jsonl")[1] == []


def test_an_artifact_upload_that_fails_for_now_is_not_a_refusal():
    from invaders.tracking.store import permanent

    assert not permanent(uploaded(503, "Service Unavailable", ""))
    assert not permanent(requests.ConnectionError("Connection reset by peer"))
    assert permanent(uploaded(401, "Unauthorized", "You are not authenticated."))
