import json
import subprocess

import numpy as np
import pytest
from conftest import BIN

from invaders.stats import bootstrap_mean_ci, summarize

pytestmark = pytest.mark.unit


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_episodes():
    rng = np.random.default_rng(0)
    few = [rng.normal(300, 100, 10) for _ in range(3)]
    many = [rng.normal(300, 100, 1000) for _ in range(3)]
    lo_few, hi_few = bootstrap_mean_ci(few)
    lo_many, hi_many = bootstrap_mean_ci(many)
    assert lo_few < np.mean([s.mean() for s in few]) < hi_few
    assert lo_many < 300 < hi_many
    assert (hi_many - lo_many) < (hi_few - lo_few) / 5  # about 1/sqrt(100) as wide
    # Resampling within runs: the interval of a constant run is that constant.
    assert bootstrap_mean_ci([[5.0] * 4, [7.0] * 9]) == (6.0, 6.0)
    assert bootstrap_mean_ci(few) == bootstrap_mean_ci(few)  # a fixed generator: the same interval


def test_summary_per_run_and_over_runs():
    summary = summarize({"a": [1.0, 3.0], "b": [10.0, 10.0, 10.0]})
    assert summary["runs"]["a"] == {"mean": 2.0, "std": 1.0, "episodes": 2}
    assert summary["mean"] == 6.0 and summary["lowest_run_mean"] == 2.0 and summary["episodes"] == 5
    assert 5.5 <= summary["ci"][0] <= 6.0 <= summary["ci"][1] <= 6.5
    with pytest.raises(ValueError):
        summarize({"a": []})


def test_cli_reads_each_runs_episodes(tmp_path):
    for name, rewards in (("s0", [100, 200]), ("s1", [300, 500])):
        (tmp_path / name / "eval").mkdir(parents=True)
        (tmp_path / name / "eval" / "episodes.csv").write_text(
            "episode,reward,length\n" + "".join(f"{i + 1},{r},10\n" for i, r in enumerate(rewards)))
    out = subprocess.run([str(BIN / "invaders"), "scores", "s0", "s1", "--json"], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out)["mean"] == 275.0
    text = subprocess.run([str(BIN / "invaders"), "scores", "s0", "s1"], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout
    assert "mean over 2 runs: 275.0" in text
    bad = subprocess.run([str(BIN / "invaders"), "scores", "missing"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "missing" in bad.stderr
