#!/usr/bin/env bash
# Start a Ray node for sweeps with token authentication: the nodes and the driver share one token, and
# the cluster runs code only for who holds it (`ray start` alone, in Ray 2.60, starts a cluster that
# runs code for anyone who reaches its port).
#
#   scripts/ray-node.sh head [RAY START OPTIONS]      on the head's machine: ray start --head ...
#   scripts/ray-node.sh worker [RAY START OPTIONS]    on each worker machine: ray start ...
#
#   e.g. scripts/ray-node.sh head --port 6379 --num-cpus 0
#        scripts/ray-node.sh worker --address HEAD:6379
#
# The token is the file $RAY_AUTH_TOKEN_PATH (default ~/.ray/auth_token, where Ray looks by itself).
# `head` makes it when there is none (64 random hex digits, mode 0600); copy it from there to every
# worker machine and to the driver's, mode 0600 (scp -p), before starting them. `head` and `worker`
# refuse a token file that is missing, empty, or readable by others than its owner. The node runs with
# RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH set to the file (RAY_AUTH_TOKEN is ignored); so must the
# driver: RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=FILE invaders sweep SWEEP.yaml --address HEAD:6379
# The token is never printed. Exit codes: 2 bad use or an unusable token file; else `ray start`'s.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
fail() { echo "error: $*" >&2; exit 2; }

[ $# -ge 1 ] || fail "a node kind is needed: head or worker (scripts/ray-node.sh --help)"
kind=$1
shift
case "$kind" in
  head|worker) ;;
  -h|--help) usage; exit 0 ;;
  *) fail "unknown node kind '$kind' (allowed: head, worker)" ;;
esac

token=$(realpath -m -- "${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}")  # absolute: every Ray process reads it
if [ "$kind" = head ] && [ ! -e "$token" ]; then
  mkdir -p -- "$(dirname -- "$token")"
  (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$token.new" && mv -- "$token.new" "$token")
  echo "ray-node: made a new token in $token (mode 0600); copy it to every worker machine and the driver's" >&2
fi
[ -f "$token" ] || fail "$token: no token file; copy the head's (scp -p HEAD:$token $token), or set RAY_AUTH_TOKEN_PATH"
[ -s "$token" ] || fail "$token: the token file is empty; copy the head's again"
mode=$(stat -L -c %a -- "$token")
(( (8#$mode & 8#077) == 0 )) || fail "$token: readable by others than its owner (mode $mode): chmod 600 $token"

# The ray on PATH (an active venv), else the one `make install` put in the project's .venv.
repo=$(cd -- "$(dirname -- "$0")/.." && pwd)
if ! command -v ray >/dev/null && [ -x "$repo/.venv/bin/ray" ]; then PATH="$repo/.venv/bin:$PATH"; export PATH; fi
command -v ray >/dev/null || fail "ray not found: run make install"

unset RAY_AUTH_TOKEN
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$token"
if [ "$kind" = head ]; then
  exec ray start --head "$@"
fi
exec ray start "$@"
