"""The live table of a sweep's trials, a Ray Tune callback (so this module imports Ray)."""

from __future__ import annotations

import math
import time

from ray import tune

from invaders.sweep.spec import Trial


class ProgressTable(tune.Callback):
    """The live table of trials (state, node, step, latest validation score), on stdout when it changes,
    at most every `every` seconds, and at the end. Tune keeps it with the experiment (it is pickled)."""

    def __init__(self, trials: list[Trial], every: float = 5.0):
        self.rows = {t.id: {"setting": t.label, "state": "PENDING", "node": "", "step": 0, "val": math.nan}
                     for t in trials}
        self.every, self.last, self.dirty = every, 0.0, True

    def update(self, trial, **values) -> None:
        row = self.rows[trial.config["trial"]["id"]]
        for key, value in values.items():
            if value is not None and row.get(key) != value:
                row[key], self.dirty = value, True

    def show(self, force: bool = False) -> None:
        if not self.dirty or (not force and time.monotonic() - self.last < self.every):
            return
        width = max(len(r["setting"]) for r in self.rows.values())
        lines = [f"{'trial':<14} {'setting':<{width}} {'state':<10} {'node':<12} {'step':>8} {'validation':>10}"]
        for trial_id, r in self.rows.items():
            val = "" if r["val"] is None or math.isnan(r["val"]) else f"{r['val']:.1f}"
            lines.append(f"{trial_id:<14} {r['setting']:<{width}} {r['state']:<10} {r['node']:<12} {r['step']:>8}"
                         f" {val:>10}")
        print("\n".join(lines) + "\n", flush=True)
        self.last, self.dirty = time.monotonic(), False

    def on_trial_start(self, iteration, trials, trial, **info):
        self.update(trial, state="RUNNING")
        self.show()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.update(trial, state="RUNNING", node=result.get("node"), step=result.get("step"),
                    val=result.get("val_mean_reward"))
        self.show()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.update(trial, state="DONE" if trial.last_result.get("done") else "STOPPED")  # ASHA stops some
        self.show()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.update(trial, state="ERROR")
        self.show(force=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.update(trial, state="RESTARTING")
        self.show(force=True)
