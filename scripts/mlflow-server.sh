#!/usr/bin/env bash
# A team's MLflow tracking server: PostgreSQL backend store, proxied artifacts, logins (MLflow's
# basic-auth app, whose users database is PostgreSQL too, plus one rule: only an admin or a user
# with MANAGE on a registered model may move its `champion` alias).
#
#   scripts/mlflow-server.sh [--backend-store-uri URI | --local-postgres DIR]
#                            [--artifacts-destination DIR|URI] [--host HOST] [--port PORT]
#                            [--admin-password-file FILE] [--workers N]
#                            [--tls-cert FILE --tls-key FILE]
#
#   --backend-store-uri      postgresql://USER:PASSWORD@HOST:PORT/DB (env MLFLOW_BACKEND_STORE_URI);
#                            the users tables go to the same database (MLflow keeps them apart)
#   --local-postgres DIR     for trying it on one machine: a PostgreSQL cluster in DIR (made on the
#                            first start, reused after), on a free loopback port, stopped with the
#                            server; run as root, PostgreSQL runs as the OS user `postgres`
#   --artifacts-destination  where artifacts are stored, a directory or any store MLflow supports
#                            (s3://..., gs://...) (env MLFLOW_ARTIFACTS_DESTINATION; default
#                            DIR/artifacts with --local-postgres, else ./mlartifacts)
#   --host, --port           where the server listens (env MLFLOW_HOST, MLFLOW_PORT; 127.0.0.1:5000)
#   --admin-password-file    a file holding the password of the admin user `admin`, created on the
#                            first start (or env MLFLOW_AUTH_ADMIN_PASSWORD; ignored once it exists)
#   --workers                server worker processes (default 2)
#   --tls-cert, --tls-key    serve HTTPS with this certificate (PEM, any intermediate CAs after it)
#                            and its unencrypted private key (PEM) (env MLFLOW_TLS_CERT,
#                            MLFLOW_TLS_KEY); clients of a private CA set
#                            MLFLOW_TRACKING_SERVER_CERT_PATH to the CA's certificate. Without
#                            them the server speaks plain HTTP, with a warning unless on loopback
#
# The server's secret key (MLFLOW_FLASK_SERVER_SECRET_KEY) is kept in DIR with --local-postgres;
# otherwise set it, the same on every server of a team, or one is made for this start.
# Stops on Ctrl-C or SIGTERM, PostgreSQL with it, leaving no process behind.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
fail() { echo "mlflow-server: $*" >&2; exit 2; }

backend=${MLFLOW_BACKEND_STORE_URI:-} local_pg="" artifacts=${MLFLOW_ARTIFACTS_DESTINATION:-}
host=${MLFLOW_HOST:-127.0.0.1} port=${MLFLOW_PORT:-5000} password_file="" workers=2
tls_cert=${MLFLOW_TLS_CERT:-} tls_key=${MLFLOW_TLS_KEY:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --backend-store-uri|--local-postgres|--artifacts-destination|--host|--port|--admin-password-file|--workers|--tls-cert|--tls-key)
      [ $# -ge 2 ] && [ -n "$2" ] || fail "$1: needs a value"
      case "$1" in
        --backend-store-uri) backend=$2 ;;
        --local-postgres) local_pg=$2 ;;
        --artifacts-destination) artifacts=$2 ;;
        --host) host=$2 ;;
        --port) port=$2 ;;
        --admin-password-file) password_file=$2 ;;
        --workers) workers=$2 ;;
        --tls-cert) tls_cert=$2 ;;
        --tls-key) tls_key=$2 ;;
      esac
      shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) fail "unknown option '$1' (allowed: --backend-store-uri, --local-postgres, --artifacts-destination, --host, --port, --admin-password-file, --workers, --tls-cert, --tls-key)" ;;
  esac
done
[[ "$port" =~ ^[0-9]+$ ]] || fail "--port: must be a whole number (got '$port')"
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || fail "--workers: must be a whole number >= 1 (got '$workers')"
if [ -n "$local_pg" ] && [ -n "$backend" ]; then
  fail "--local-postgres and --backend-store-uri (or MLFLOW_BACKEND_STORE_URI): give one"
fi
[ -n "$local_pg" ] || [ -n "$backend" ] || \
  fail "no backend store: give --backend-store-uri postgresql://... (or MLFLOW_BACKEND_STORE_URI), or --local-postgres DIR"
if [ -n "$backend" ] && [[ "$backend" != postgresql* ]]; then
  fail "--backend-store-uri: must be a postgresql:// URI (a team server runs on PostgreSQL)"
fi
# Basic auth sends every password and token with every request: off this machine, only under TLS.
scheme=http
if [ -n "$tls_cert" ] || [ -n "$tls_key" ]; then
  [ -n "$tls_cert" ] && [ -n "$tls_key" ] || fail "--tls-cert and --tls-key (or MLFLOW_TLS_CERT and MLFLOW_TLS_KEY): give both"
  [ -r "$tls_cert" ] || fail "--tls-cert: cannot read '$tls_cert'"
  [ -r "$tls_key" ] || fail "--tls-key: cannot read '$tls_key'"
  scheme=https
else
  case "$host" in
    127.*|localhost|::1|"[::1]") ;;
    *) echo "mlflow-server: warning: plain HTTP on $host: every login and token crosses the network in clear;" \
            "give --tls-cert and --tls-key to serve HTTPS" >&2 ;;
  esac
fi
if [ -n "$password_file" ]; then
  [ -r "$password_file" ] || fail "--admin-password-file: cannot read '$password_file'"
  MLFLOW_AUTH_ADMIN_PASSWORD=$(head -n 1 -- "$password_file")
  export MLFLOW_AUTH_ADMIN_PASSWORD
fi

# Paths are the caller's: resolve them before moving to the repo.
if [ -n "$tls_cert" ]; then tls_cert=$(realpath -- "$tls_cert") tls_key=$(realpath -- "$tls_key"); fi
if [ -n "$local_pg" ]; then mkdir -p -- "$local_pg" && local_pg=$(realpath -- "$local_pg"); fi
if [ -n "$artifacts" ] && [[ "$artifacts" != *://* ]]; then artifacts=$(realpath -m -- "$artifacts"); fi
default_artifacts=$PWD/mlartifacts
cd "$(dirname "$0")/.."
if [ -x .venv/bin/mlflow ]; then PATH="$PWD/.venv/bin:$PATH"; export PATH; fi
command -v mlflow >/dev/null || fail "mlflow not found: run make install"
server_opts=()
if [ -n "$tls_cert" ]; then
  # A bad pair would fail every uvicorn worker, again and again: check it once here. MLflow
  # splits the uvicorn options as a shell would.
  uvicorn_opts=$(python -c '
import shlex, ssl, sys
cert, key = sys.argv[1:]
try:
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key, password=lambda: b"")
except (ssl.SSLError, OSError) as exc:
    sys.exit(f"mlflow-server: --tls-cert, --tls-key: not a PEM certificate and its unencrypted private key ({exc})")
print(f"--ssl-certfile {shlex.quote(cert)} --ssl-keyfile {shlex.quote(key)}")
' "$tls_cert" "$tls_key") || exit 2
  server_opts=(--uvicorn-opts "$uvicorn_opts")
fi

secrets=$(mktemp -d)  # the auth config (it holds the database password): this user's only
pg_started=0 server_pid=""
stop() {
  trap - EXIT INT TERM
  if [ -n "$server_pid" ]; then
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$pg_started" = 1 ]; then as_pg pg_ctl -D "$pgdata" -m fast -w stop >/dev/null || true; fi
  rm -rf "$secrets"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "$local_pg" ]; then
  command -v initdb >/dev/null || PATH="$PATH:$(find /usr/lib/postgresql -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)"
  command -v initdb >/dev/null || fail "--local-postgres: PostgreSQL's initdb not found (Debian: apt-get install postgresql)"
  pgdata=$local_pg/pgdata
  # PostgreSQL refuses to run as root: then it runs as `postgres`, which must reach DIR.
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || fail "--local-postgres: running as root needs an OS user 'postgres' to run PostgreSQL"
    as_pg() { runuser -u postgres -- "$@"; }
    mkdir -p "$pgdata" "$local_pg/run"
    chown postgres "$pgdata" "$local_pg/run"
    as_pg test -x "$local_pg" || fail "--local-postgres: user postgres cannot reach $local_pg (make its parent directories searchable)"
  else
    as_pg() { "$@"; }
    mkdir -p "$pgdata" "$local_pg/run"
  fi
  chmod 700 "$pgdata"
  umask 077
  if [ ! -s "$local_pg/password" ]; then
    python -c 'import secrets; print(secrets.token_urlsafe(24))' >"$local_pg/password"
  fi
  if [ ! -s "$local_pg/secret-key" ]; then
    python -c 'import secrets; print(secrets.token_hex(32))' >"$local_pg/secret-key"
  fi
  umask 022
  db_password=$(cat "$local_pg/password")
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    echo "mlflow-server: creating a PostgreSQL cluster in $pgdata"
    install -m 600 /dev/null "$secrets/pwfile"
    echo "$db_password" >"$secrets/pwfile"
    [ "$(id -u)" != 0 ] || chown postgres "$secrets" "$secrets/pwfile"
    as_pg initdb -D "$pgdata" -U mlflow --pwfile="$secrets/pwfile" -A scram-sha-256 >"$local_pg/initdb.log" 2>&1 \
      || fail "--local-postgres: initdb failed (see $local_pg/initdb.log)"
    rm -f "$secrets/pwfile"
  fi
  pg_port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_pg pg_ctl -D "$pgdata" -l "$pgdata/postgres.log" -w -t 60 \
    -o "-p $pg_port -k $local_pg/run -c listen_addresses=127.0.0.1" start >/dev/null \
    || fail "--local-postgres: PostgreSQL did not start (see $pgdata/postgres.log)"
  pg_started=1
  export PGPASSWORD=$db_password
  if [ -z "$(psql -h 127.0.0.1 -p "$pg_port" -U mlflow -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'mlflow'")" ]; then
    createdb -h 127.0.0.1 -p "$pg_port" -U mlflow mlflow
  fi
  unset PGPASSWORD
  backend="postgresql://mlflow:$db_password@127.0.0.1:$pg_port/mlflow"
  artifacts=${artifacts:-$local_pg/artifacts}
  MLFLOW_FLASK_SERVER_SECRET_KEY=${MLFLOW_FLASK_SERVER_SECRET_KEY:-$(cat "$local_pg/secret-key")}
fi
artifacts=${artifacts:-$default_artifacts}
export MLFLOW_FLASK_SERVER_SECRET_KEY=${MLFLOW_FLASK_SERVER_SECRET_KEY:-$(python -c 'import secrets; print(secrets.token_hex(32))')}

# The URIs travel in the environment and a private file, never on a command line (`ps` shows those).
umask 077
cat >"$secrets/auth.ini" <<EOF
[mlflow]
default_permission = READ
database_uri = $backend
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
umask 022
export MLFLOW_AUTH_CONFIG_PATH=$secrets/auth.ini MLFLOW_BACKEND_STORE_URI=$backend
python -m invaders.ops.team_server prepare

# MLflow's job runner (GenAI evaluation jobs, 7 more processes) has nothing to do here.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
echo "mlflow-server: $scheme://$host:$port (artifacts: $artifacts)"
# Its own process group, so stopping it stops its workers too.
setsid mlflow server --app-name invaders-auth --artifacts-destination "$artifacts" \
  --host "$host" --port "$port" --workers "$workers" "${server_opts[@]}" &
server_pid=$!
wait "$server_pid"
