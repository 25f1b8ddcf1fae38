"""The team server's side (scripts/mlflow-server.sh): MLflow's basic-auth app with one more rule,
and getting its databases ready before the server starts.

The rule: setting or deleting the `champion` alias needs MANAGE on the registered model (or an
admin). MLflow's own rule is EDIT, which every user who may register a version has, so any
writer could crown their own agent.
"""

from __future__ import annotations

import sys

from invaders.errors import first_line

PROTECTED_ALIAS = "champion"  # registry.CHAMPION; not imported, the server need not load TensorFlow
ALIAS_PATH = "/mlflow/registered-models/alias"


def _champion_needs_manage():
    """A Flask before-request hook, run after basic-auth's (which has authenticated the user)."""
    from flask import jsonify, make_response, request
    from mlflow.server import auth

    from invaders.compat.mlflow import can_manage_registered_model, request_param

    if not (request.path.endswith(ALIAS_PATH) and request.method in ("POST", "DELETE")):
        return None
    if request_param("alias") != PROTECTED_ALIAS:
        return None
    username = auth.authenticate_request().username
    if auth.store.get_user(username).is_admin:
        return None
    name = request_param("name")
    if can_manage_registered_model(name):
        return None
    message = (f"moving the '{PROTECTED_ALIAS}' alias of registered model '{name}' needs MANAGE on it;"
               f" user '{username}' has less")
    return make_response(jsonify(error_code="PERMISSION_DENIED", message=message), 403)


def create_app():
    """The `invaders-auth` server app (`mlflow server --app-name invaders-auth`): MLflow's
    basic-auth app, then the `champion` rule."""
    from mlflow.server import app
    from mlflow.server.auth import create_app as basic_auth

    served = basic_auth(app)  # registers basic-auth's own before-request hook first
    app.before_request(_champion_needs_manage)
    return served


def _redact(uri: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(uri).render_as_string(hide_password=True)


def prepare(backend_uri: str) -> None:
    """Before the server starts: upgrade an older tracking schema (saying so), and create the
    admin user in the users database if it is not there yet. An empty database is left to the
    server, which creates its tables on first start."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import bootstrap_admin_user, get_flask_server_secret_key
    from mlflow.store.db import utils

    from invaders.compat.mlflow import upgrade_schema

    def say(current: str, head: str) -> None:
        print(f"mlflow-server: the schema of {_redact(backend_uri)} is older than this MLflow's"
              f" ({current} -> {head}): running `mlflow db upgrade` (take a backup first if it matters)", flush=True)

    engine = utils.create_sqlalchemy_engine(backend_uri)
    try:
        upgrade_schema(engine, say)
    finally:
        engine.dispose()
    try:
        get_flask_server_secret_key()
        bootstrap_admin_user()
    except MlflowException as exc:
        sys.exit(f"mlflow-server: {first_line(exc.message, None)}")


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] != "prepare":
        sys.exit("usage: python -m invaders.ops.team_server prepare  (the backend store URI in MLFLOW_BACKEND_STORE_URI)")
    import os

    prepare(os.environ["MLFLOW_BACKEND_STORE_URI"])
