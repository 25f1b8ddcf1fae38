"""TLS for the team server, without starting one: the server script's TLS options and its warning about
plain HTTP, and what a client says about a certificate it will not accept, against an HTTPS socket in
this process with certificates made by trustme. The team server itself serves HTTPS in
tests/ops/test_team_server.py."""

import contextlib
import datetime
import http.server
import json
import re
import ssl
import threading
import time

import mlflow  # noqa: F401 - imported before any timing: a loaded machine takes seconds
import pytest
import trustme
from conftest import REPO, run

from invaders.tracking.store import TrackingError, experiment_link

pytestmark = pytest.mark.unit

SCRIPT = str(REPO / "scripts" / "mlflow-server.sh")
# Any PostgreSQL URI: every run of the script here stops before it connects.
BACKEND = ["--backend-store-uri", "postgresql://mlflow@127.0.0.1:9/mlflow"]
WARNING = ("mlflow-server: warning: plain HTTP on 0.0.0.0: every login and token crosses the network in clear;"
           " give --tls-cert and --tls-key to serve HTTPS")


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def pem_files(root, cert) -> tuple[str, str]:
    cert.cert_chain_pems[0].write_to_path(root / "cert.pem")
    cert.private_key_pem.write_to_path(root / "key.pem")
    return str(root / "cert.pem"), str(root / "key.pem")


def test_plain_http_off_loopback_is_one_warning_line(tmp_path):
    """At start, before anything else is read; a missing password file stops the script right after."""
    missing = ["--admin-password-file", str(tmp_path / "missing")]
    for host, warned in (("0.0.0.0", True), ("127.0.0.1", False), ("localhost", False)):
        result = run(["bash", SCRIPT, *BACKEND, "--host", host, *missing], tmp_path, check=False)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [WARNING.replace("0.0.0.0", host)] * warned + [
            f"mlflow-server: --admin-password-file: cannot read '{tmp_path / 'missing'}'"], result.stderr


def test_the_script_checks_its_certificate_and_key_before_starting(tmp_path, ca):
    cert, key = pem_files(tmp_path, ca.issue_cert("127.0.0.1"))
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = pem_files(other, ca.issue_cert("127.0.0.1"))
    both = "mlflow-server: --tls-cert and --tls-key (or MLFLOW_TLS_CERT and MLFLOW_TLS_KEY): give both"
    cases = [
        (["--tls-cert", cert], re.escape(both)),
        (["--tls-cert", cert, "--tls-key", str(tmp_path / "nope.pem")],
         re.escape(f"mlflow-server: --tls-key: cannot read '{tmp_path / 'nope.pem'}'")),
        (["--tls-cert", cert, "--tls-key", other_key],
         r"mlflow-server: --tls-cert, --tls-key: not a PEM certificate and its unencrypted private key"
         r" \(\[\w+: KEY_VALUES_MISMATCH\].*\)"),
    ]
    for options, says in cases:  # off loopback, and no warning: it would serve HTTPS
        result = run(["bash", SCRIPT, *BACKEND, "--host", "0.0.0.0", *options], tmp_path, check=False)
        assert result.returncode == 2 and re.fullmatch(says, result.stderr.rstrip("\n")), result.stderr
    env = run(["bash", SCRIPT, *BACKEND], tmp_path, check=False, MLFLOW_TLS_KEY=key)  # the same from the environment
    assert env.returncode == 2 and env.stderr.strip() == both


class NotFound(http.server.BaseHTTPRequestHandler):
    """Every request: no such experiment (so a client that got this far trusted the certificate)."""

    def do_GET(self):
        body = json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def https_server(cert):
    """An HTTPS server on a free loopback port, in a thread, serving `cert`; yields its URL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda request, address: None  # a client that hangs up on the handshake
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("identity, trusted_ca, says", [
    ("127.0.0.1", None, r"its TLS certificate is not trusted \(unable to get local issuer certificate\); set"
                        r" MLFLOW_TRACKING_SERVER_CERT_PATH to the CA's certificate"),
    # As a CI secret that is not set gives: MLflow alone would check no certificate at all.
    ("127.0.0.1", "", r"its TLS certificate is not trusted \(unable to get local issuer certificate\); set"
                      r" MLFLOW_TRACKING_SERVER_CERT_PATH to the CA's certificate"),
    ("127.0.0.1", "other", r"its TLS certificate is not trusted \(unable to get local issuer certificate\): the CA"
                           r" certificate in MLFLOW_TRACKING_SERVER_CERT_PATH \(\S+/other\.pem\) did not sign it"),
    ("server.example", "ca", r"its TLS certificate is not for this host \(IP address mismatch, certificate is not"
                             r" valid for '127\.0\.0\.1'\): use a host name the certificate names"),
    ("expired", "ca", r"its TLS certificate has expired \(certificate has expired\): the server needs a new one"),
    ("127.0.0.1", "missing", r"MLFLOW_TRACKING_SERVER_CERT_PATH names no readable file \('\S+/missing\.pem'\): give"
                             r" the path of the CA's certificate \(PEM\)"),
], ids=["no CA", "empty CA variable", "another CA", "another host", "expired", "no CA file"])
def test_a_certificate_the_client_does_not_accept_is_one_line_in_seconds(tmp_path, monkeypatch, ca, identity,
                                                                          trusted_ca, says):
    """The check every stage (and `invaders ui`) makes first names the URI, why, and the fix; no retries."""
    if identity == "expired":
        cert = ca.issue_cert("127.0.0.1", not_before=datetime.datetime(2020, 1, 1),
                             not_after=datetime.datetime(2020, 2, 1))
    else:
        cert = ca.issue_cert(identity)
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    trustme.CA().cert_pem.write_to_path(tmp_path / "other.pem")
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH", raising=False)
    if trusted_ca is not None:
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", trusted_ca and str(tmp_path / f"{trusted_ca}.pem"))
    with https_server(cert) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        started = time.monotonic()
        with pytest.raises(TrackingError) as refused:
            experiment_link("invaders")
        assert time.monotonic() - started < 10
    assert refused.value.args[0].startswith(f"MLflow tracking URI '{url}' is not usable: ")
    assert re.fullmatch(says, refused.value.args[0].split(" is not usable: ", 1)[1]), refused.value.args[0]


def test_a_client_given_the_ca_talks_to_the_server(tmp_path, monkeypatch, ca):
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(tmp_path / "ca.pem"))
    with https_server(ca.issue_cert("127.0.0.1")) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        assert experiment_link("invaders") == url  # the server's answer: no such experiment yet
