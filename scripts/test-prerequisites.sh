#!/usr/bin/env bash
# The Debian packages the test suite needs besides the venv: chromium (the MLflow UI test drives it) and
# postgresql (the team server's tests run initdb, pg_ctl and psql). `make test` and .ci/run call this first.
#
#   scripts/test-prerequisites.sh [PACKAGE...]   (default: all of them; e.g. `chromium` for make ui-screenshots)
#
# Missing packages are installed with apt-get as root, or with `sudo -n apt-get` where sudo asks no password.
# Otherwise one line names them and the command that installs them, and the exit code is 2: no test runs
# without what it needs. What is looked for, the defaults being where Debian puts it:
#   INVADERS_CHROMIUM        the browser (tests/browser.py takes the same): default chromium or google-chrome on
#                            PATH, else /usr/bin/chromium
#   INVADERS_POSTGRESQL_LIB  the server's versions, each with bin/initdb (scripts/mlflow-server.sh looks there
#                            when initdb is not on PATH): default /usr/lib/postgresql
set -euo pipefail

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(chromium postgresql)

chromium=${INVADERS_CHROMIUM:-$(command -v chromium || command -v google-chrome || echo /usr/bin/chromium)}
postgresql_lib=${INVADERS_POSTGRESQL_LIB:-/usr/lib/postgresql}

has() {
  case $1 in
    chromium) [ -x "$chromium" ] ;;
    postgresql) command -v initdb >/dev/null || compgen -G "$postgresql_lib/*/bin/initdb" >/dev/null ;;
    *) echo "error: test-prerequisites.sh: unknown package $1 (known: chromium postgresql)" >&2; exit 2 ;;
  esac
}

missing=()
for package in "${wanted[@]}"; do
  has "$package" || missing+=("$package")
done
[ ${#missing[@]} -gt 0 ] || exit 0

if [ "$EUID" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "error: the tests need the Debian packages ${missing[*]}; install them with:" \
    "sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 2
fi
echo "test-prerequisites: installing ${missing[*]} with apt-get"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
for package in "${missing[@]}"; do
  has "$package" || { echo "error: apt-get installed $package, but it is still not found (see the top of $0)" >&2; exit 2; }
done
