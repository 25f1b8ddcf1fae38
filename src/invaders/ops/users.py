"""Team server users (`invaders users add NAME --role ROLE`), through MLflow's auth REST API.

The roles are grants on the pipeline's experiment and registered model; the server
(scripts/mlflow-server.sh) gives every user READ on everything else:
- reader: browse runs, models and artifacts;
- writer: also run the pipeline (runs, artifacts, model versions, the `challenger` alias): EDIT
  on the experiment and the registered model. Not `champion`: that needs MANAGE (or admin);
- admin: everything, users included.
An admin creates the experiment and the registered model if they do not exist yet, so that no
writer becomes their manager by creating them first.
"""

from __future__ import annotations

import getpass
import os
import sys
import warnings

from invaders.errors import UserError, first_line
from invaders.tracking.store import no_retries, redact, refusal, tls_problem, tracking_uri

ROLES = ("reader", "writer", "admin")


def read_password(name: str) -> str:
    """The new user's password: asked twice on a terminal, else the first line of stdin (never an argument)."""
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            raise UserError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise UserError(f"no password for {name} (type it when asked, or give it on stdin)")
    return password


def _reason(exc: Exception) -> str:
    if tls := tls_problem(exc):
        return tls
    kind = refusal(exc)
    if kind == "unauthenticated":
        return ("unauthenticated: give an admin's login in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
                if os.environ.get("MLFLOW_TRACKING_USERNAME") else
                "unauthenticated: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an admin's login")
    if kind == "forbidden":
        return f"forbidden: user {os.environ.get('MLFLOW_TRACKING_USERNAME')!r} is not an admin"
    return first_line(getattr(exc, "message", None) or exc)


def add_user(name: str, role: str, password: str, experiment: str, model_name: str) -> str:
    """Create user `name` with `role` on the tracking server; returns one line saying what was done."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from mlflow.server import get_app_client

    if role not in ROLES:
        raise UserError(f"--role: {role!r} is not a role (allowed: {', '.join(ROLES)})")
    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        raise UserError(f"MLFLOW_TRACKING_URI must name the team server (http[s]://...), not {redact(uri)!r}")
    with warnings.catch_warnings():  # MLflow's server app, imported with the auth client, warns of its own imports
        warnings.filterwarnings("ignore", message="starlette.middleware.wsgi is deprecated")
        auth = get_app_client("basic-auth", tracking_uri=uri)
    try:
        # The first request: a server that does not answer or is not trusted fails in seconds (and a
        # user created by a try whose answer was lost would make the next one fail).
        with no_retries(timeout=None):
            auth.create_user(name, password)
        if role == "admin":
            auth.update_user_admin(name, True)
        elif role == "writer":
            client = mlflow.MlflowClient(uri)
            found = client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else client.create_experiment(experiment)
            try:
                client.get_registered_model(model_name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                client.create_registered_model(model_name)
            auth.grant_user_permission(name, "experiment", experiment_id, "EDIT")
            auth.grant_user_permission(name, "registered_model", model_name, "EDIT")
    except MlflowException as exc:
        raise UserError(f"{redact(uri)}: cannot add user {name!r}: {_reason(exc)}") from None
    where = f" (EDIT on experiment {experiment!r} and registered model {model_name!r})" if role == "writer" else ""
    return f"added {role} {name!r} on {redact(uri)}{where}"
