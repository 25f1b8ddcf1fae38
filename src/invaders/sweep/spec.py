"""The sweep file: its schema, and the trials it expands to (settings × seeds), all validated.

A sweep file names a base params file (and keys it sets there), a grid and/or random search space over dotted params keys,
the seeds every setting runs with, the resources of a trial and the metric. Every trial's params
are built and validated here, before Ray starts (nothing here imports Ray). The base params always
run as the setting `base`, so the summary can say whether the best setting beats them.
"""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from invaders.config import Params, ParamsError, Strict, check_name, describe, load_params, parse_params, read_yaml
from invaders.errors import UserError, named, shown
from invaders.sweep.summary import BASE  # the setting with no overrides: the base params file as it is


class SweepError(UserError):
    pass


MAX_TRIALS = 10_000  # settings × seeds: more is a typo (a grid of ten keys), and would take the memory first


class SweepInterrupted(UserError):
    """Stopped (Ctrl-C) with its state saved: not bad input, and not a summary either."""

    exit_code = 130


class Distribution(Strict):
    """One random dimension: exactly one of these."""

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = Field(None, description="integers low..high, both included")
    choice: list[bool | int | float | str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Distribution:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform, loguniform, randint, choice")
        low_high = self.uniform or self.loguniform or self.randint
        if low_high and not all(math.isfinite(v) for v in low_high):
            raise ValueError(f"low and high must be finite numbers (got {list(low_high)})")
        if low_high and not low_high[0] < low_high[1]:
            raise ValueError(f"low must be less than high (got {list(low_high)})")
        if self.uniform and not math.isfinite(self.uniform[1] - self.uniform[0]):
            raise ValueError(f"high - low must be a finite number (got {list(self.uniform)})")
        if self.randint and not -2**63 <= self.randint[0] < self.randint[1] < 2**63:
            raise ValueError(f"randint needs 64-bit integers (got {shown(list(self.randint))})")
        if self.loguniform and self.loguniform[0] <= 0:
            raise ValueError("loguniform needs a positive low")
        return self

    def draw(self, rng):
        if self.uniform:
            return float(rng.uniform(*self.uniform))
        if self.loguniform:
            low, high = self.loguniform
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        if self.randint:
            return int(rng.integers(self.randint[0], self.randint[1] + 1))
        return self.choice[int(rng.integers(len(self.choice)))]


class RandomSearch(Strict):
    samples: int = Field(ge=1, le=1000, description="random settings drawn (each crossed with the grid)")
    seed: int = Field(0, ge=0, description="seed of the draws: the same file draws the same settings")
    space: dict[str, Distribution] = Field(min_length=1)


class Resources(Strict):
    cpus: int = Field(1, ge=1, le=256, description="CPUs per trial (TensorFlow's threads in native mode)")
    memory_gb: float | None = Field(None, gt=0, allow_inf_nan=False, description="memory per trial that Ray reserves (GB)")


class Asha(Strict):
    grace_steps: int = Field(ge=1, description="training steps before a trial can be stopped")
    reduction_factor: int = Field(2, ge=2, le=16)


class Sweep(Strict):
    name: str = Field(description="data/sweeps/<name>/ holds its trials and summary")
    params: Path = Field(Path("params.yaml"), description="the base params file")
    base: dict[str, bool | int | float | str] = Field(
        default_factory=dict, description="dotted params keys set in the base params file: the setting `base`"
                                          " runs with them, and every other setting starts from them")
    seeds: list[int] = Field(min_length=1, description="every setting runs with every seed")
    grid: dict[str, list[bool | int | float | str]] = Field(default_factory=dict)
    random: RandomSearch | None = None
    resources: Resources = Resources()
    metric: Literal["eval_mean_reward", "val_best_mean_reward"] = Field(
        "eval_mean_reward", description="a trial's score: the evaluate stage's mean, or the best validation mean")
    asha: Asha | None = Field(None, description="stop trials early on their validation score")
    max_failures: int = Field(3, ge=0, le=100, description="restarts of a trial whose node or process died")
    storage: str | None = Field(None, description="Ray's storage_path (default data/sweeps/<name>/ray)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, 64)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value) or any(not 0 <= s <= 2**31 - 1 for s in value):
            raise ValueError(f"must be distinct integers from 0 to 2147483647 (got {shown(value)})")
        return value

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: dict) -> dict:
        for key, values in value.items():
            if not values:
                raise ValueError(f"{named(key)}: needs at least one value")
        return value


def _sweep_error(path: str, exc: ValidationError) -> str:
    error = exc.errors()[0]
    if error["type"] == "missing":
        return f"{path}: {named('.'.join(map(str, error['loc'])))}: missing (a sweep needs name and seeds)"
    return f"{path}: {describe(error)}"


def _set(raw: dict, dotted: str, value) -> None:
    *sections, leaf = dotted.split(".")
    for section in sections:
        raw = raw.setdefault(section, {})
    raw[leaf] = value


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Trial(BaseModel):
    """One run of the sweep: a setting (overrides of the base params) with one seed."""

    id: str
    setting: str
    overrides: dict
    seed: int
    params: dict  # the complete, validated params as a mapping

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_value(v)}" for k, v in self.overrides.items()) or "base params"


def load(path: Path) -> tuple[Sweep, list[Trial]]:
    """The sweep file and every trial's params, all validated; SweepError naming the key otherwise."""
    source = named(path)  # as messages show the file
    raw = read_yaml(Path(path), SweepError, "sweep file")
    if not isinstance(raw, dict):
        raise SweepError(f"{source}: expected a mapping (name, params, seeds, grid, random, ...)")
    try:
        sweep = Sweep.model_validate(raw)
    except ValidationError as exc:
        raise SweepError(_sweep_error(source, exc)) from None
    base = load_params(sweep.params)  # a missing or bad base params file: its own one line
    known = set(base.flat())
    space = {**sweep.grid, **(sweep.random.space if sweep.random else {})}
    for key in [*sweep.base, *space]:
        where = "base" if key in sweep.base else "grid" if key in sweep.grid else "random.space"
        if key == "seed":
            raise SweepError(f"{source}: {where}: seed: seeds are listed under `seeds`, not set or searched over")
        if key not in known:
            raise SweepError(f"{source}: {where}: {named(key)}: unknown params key (dotted keys of the params reference,"
                             " such as agent.learning_rate)")
    if sweep.random and set(sweep.random.space) & set(sweep.grid):
        raise SweepError(f"{source}: random.space: {sorted(set(sweep.random.space) & set(sweep.grid))[0]}:"
                         " also in grid; search each key one way")
    count = math.prod(len(values) for values in sweep.grid.values()) * (sweep.random.samples if sweep.random else 1) \
        if sweep.grid or sweep.random else 0
    if (count + 1) * len(sweep.seeds) > MAX_TRIALS:  # + 1: the base params run too
        raise SweepError(f"{source}: up to {count + 1} settings × {len(sweep.seeds)} seeds; a sweep runs at most"
                         f" {MAX_TRIALS} trials")
    if sweep.base:
        raw = base.model_dump()
        for key, value in sweep.base.items():
            _set(raw, key, value)
        try:
            base = parse_params(raw, f"{source}: base")
        except ParamsError as exc:
            raise SweepError(str(exc)) from None
    return sweep, _trials(source, sweep, base)


def _settings(sweep: Sweep) -> list[dict]:
    import numpy as np

    grid = [dict(zip(sweep.grid, values)) for values in itertools.product(*sweep.grid.values())]
    if not sweep.random:
        return grid
    rng = np.random.default_rng(sweep.random.seed)
    draws = [{key: dist.draw(rng) for key, dist in sweep.random.space.items()} for _ in range(sweep.random.samples)]
    return [{**point, **draw} for draw in draws for point in grid]


def _trials(path: str, sweep: Sweep, base: Params) -> list[Trial]:
    flat = base.flat()
    settings: list[tuple[str, dict]] = [(BASE, {})]
    for overrides in _settings(sweep):
        changed = {k: v for k, v in overrides.items() if flat[k] != v}
        if changed and all(changed != seen for _, seen in settings):  # the base or a repeat runs once
            settings.append((f"s{len(settings)}", overrides))
    trials = []
    for setting, overrides in settings:
        for seed in sweep.seeds:
            raw = copy.deepcopy(base.model_dump())  # validated values: the file's may be any YAML (bytes, dates)
            for key, value in overrides.items():
                _set(raw, key, value)
            raw["seed"] = seed
            label = ", ".join(f"{k}={shown(v) if isinstance(v, str) else _value(v)}" for k, v in overrides.items()) \
                or "base params"  # the Trial's, in one short line
            try:
                params = parse_params(raw, f"{path}: setting {label}, seed {seed}")
            except ParamsError as exc:
                raise SweepError(str(exc)) from None
            if sweep.asha and not 0 < params.train.eval_every <= sweep.asha.grace_steps or (
                    sweep.asha and params.train.eval_episodes == 0):
                raise SweepError(f"{path}: asha.grace_steps: ASHA compares validation scores, so it needs"
                                 f" train.eval_episodes >= 1 and grace_steps >= train.eval_every"
                                 f" ({params.train.eval_every}) (setting {label}, seed {seed})")
            trials.append(Trial(id=f"{setting}-seed{seed}", setting=setting, overrides=overrides, seed=seed,
                                params=params.model_dump()))
    return trials

