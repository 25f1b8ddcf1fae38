#!/usr/bin/env bash
# Retrain: pull cached outputs from the DVC remote, `dvc repro`, push the outputs, print a markdown
# report, and fail if the agent does not beat the random baseline. The CI workflows run this, and
# so can you:
#
#   scripts/retrain.sh [--preset NAME|FILE] [--steps N] [--seed N] [--remote NAME|URL]
#                      [--diff REV] [--report FILE] [--commit] [--no-gate]
#
#   --preset   start from presets/NAME.yaml (seed, smoke) or a params file instead of params.yaml
#   --steps    override train.steps          --seed   override seed
#              (reproducibility.mode is always portable: the run can be reproduced on any AVX2 machine)
#   --remote   a configured DVC remote's name, or a URL/path (added to .dvc/config.local as
#              `retrain`); default: the repo's default remote; with none, nothing is pulled or pushed
#   --diff     add `dvc params diff REV --md` (this commit's params, before --preset/--steps/--seed)
#              and `dvc metrics diff REV --md` (after the run) to the report
#   --report   also write the markdown report to FILE
#   --commit   commit dvc.lock if the run changed it and used params.yaml as committed
#   --no-gate  report only; exit 0 even if the agent does not beat the random baseline
#
# The report goes to stdout and, under GitHub Actions, to the job summary ($GITHUB_STEP_SUMMARY).
# MLflow: the stages log to $MLFLOW_TRACKING_URI (with MLFLOW_TRACKING_USERNAME/PASSWORD or
# MLFLOW_TRACKING_TOKEN) if set, else to mlflow.db in the repo.
# Exit codes: 0 done, 1 the agent does not beat the random baseline, 2 bad options or params,
# 3 the registry refused to move the alias (a team server user without MANAGE on the model),
# anything else a failed step.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
fail() { echo "error: $*" >&2; exit 2; }

preset="" steps="" seed="" remote="" diff_rev="" report_file="" commit=0 gate=1
while [ $# -gt 0 ]; do
  case "$1" in
    --preset|--steps|--seed|--remote|--diff|--report)
      [ $# -ge 2 ] && [ -n "$2" ] || fail "$1: needs a value"
      case "$1" in
        --preset) preset=$2 ;;
        --steps) steps=$2 ;;
        --seed) seed=$2 ;;
        --remote) remote=$2 ;;
        --diff) diff_rev=$2 ;;
        --report) report_file=$2 ;;
      esac
      shift 2 ;;
    --commit) commit=1; shift ;;
    --no-gate) gate=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) fail "unknown option '$1' (allowed: --preset, --steps, --seed, --remote, --diff, --report, --commit, --no-gate)" ;;
  esac
done
for pair in "steps:$steps" "seed:$seed"; do
  value=${pair#*:}
  [ -z "$value" ] || [[ "$value" =~ ^[0-9]+$ ]] || fail "--${pair%%:*}: must be a whole number (got '$value')"
done

if [ -n "$report_file" ]; then report_file=$(realpath -m -- "$report_file"); fi
cd "$(dirname "$0")/.."
# `make install` puts the tools in .venv; the stages run `python`, so the venv goes first on PATH.
if [ -x .venv/bin/dvc ]; then PATH="$PWD/.venv/bin:$PATH"; export PATH; fi
command -v dvc >/dev/null || fail "dvc not found: run make install"
command -v invaders >/dev/null || fail "invaders not found: run make install"

report=$(mktemp)
trap 'rm -f "$report" "$report.md"' EXIT
# `dvc params|metrics diff REV --md` under a heading, into the report.
diff_md() {
  local out err
  printf '\n### %s\n\n' "$2" >>"$report"
  err=$(mktemp)
  if out=$(dvc "$1" diff "$diff_rev" --md 2>"$err"); then
    # A table with no rows (header and separator only) is no change.
    if [ "$(grep -c '^|' <<<"$out")" -le 2 ]; then out="No changes."; fi
  else
    out="(dvc $1 diff $diff_rev failed: $(tail -n 1 "$err"))"
  fi
  rm -f "$err"
  printf '%s\n' "$out" >>"$report"
}

if [ -n "$diff_rev" ]; then
  diff_md params "Params: this commit against $diff_rev"
fi

# Params of this run: a preset and overrides, validated before anything runs. Always portable: an agent
# trained here (CI's runners change CPU) can then be reproduced byte for byte on any AVX2 machine.
args=(--mode portable)
[ -z "$preset" ] || args+=(--preset "$preset")
[ -z "$steps" ] || args+=(--steps "$steps")
[ -z "$seed" ] || args+=(--seed "$seed")
invaders params "${args[@]}"
if git diff --quiet -- params.yaml 2>/dev/null; then committed_params=1; else committed_params=0; fi

# The DVC remote: a name, a URL or path, the default remote, or none.
remote_args=()
if [ -n "$remote" ]; then
  if dvc remote list | awk '{print $1}' | grep -qxF -- "$remote"; then
    remote_args=(-r "$remote")
  else
    dvc remote add --local --force retrain "$remote"
    remote_args=(-r retrain)
  fi
elif ! dvc remote default >/dev/null 2>&1; then
  echo "retrain: no DVC remote configured: nothing is pulled or pushed"
  remote_args=(none)
fi
has_remote() { [ "${remote_args[*]-}" != none ]; }

if has_remote; then
  # An empty remote, or one without some outputs, is fine: `dvc repro` makes what is missing.
  dvc pull --allow-missing "${remote_args[@]}"
fi
dvc repro
if has_remote; then
  dvc push "${remote_args[@]}"
fi

if [ -n "$diff_rev" ]; then
  diff_md metrics "Metrics: this run against $diff_rev"
fi
{ invaders report; cat "$report"; } >"$report.md"
cat "$report.md"
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat "$report.md" >>"$GITHUB_STEP_SUMMARY"; fi
if [ -n "$report_file" ]; then cp "$report.md" "$report_file"; fi

if [ "$commit" = 1 ]; then
  if [ "$committed_params" = 0 ]; then
    echo "retrain: params.yaml differs from the commit (--preset/--steps/--seed): dvc.lock not committed"
  elif [ -n "$(git status --porcelain -- dvc.lock)" ]; then
    git add dvc.lock
    git commit -q -m "retrain: dvc.lock for $(git rev-parse --short HEAD)" -- dvc.lock
    echo "retrain: committed dvc.lock ($(git rev-parse --short HEAD))"
  fi
fi

if [ "$gate" = 1 ] && ! invaders report --gate >/dev/null; then
  exit 1
fi
# A writer on a team server may register a champion but not crown it: say so, do not pretend.
invaders report --require-alias >/dev/null
