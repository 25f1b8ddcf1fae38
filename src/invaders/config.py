"""Typed parameters: `params.yaml` loaded into pydantic models.

Every key is declared here with its type, range and meaning, so this module is
the params reference. Unknown keys are errors (`extra="forbid"`): a typo must
never silently fall back to a default.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from invaders.errors import UserError, first_line, named, shown


class ParamsError(UserError):
    """A params file that cannot be used; the message is one line for the user."""


def check_name(value: str, longest: int) -> str:
    """`value` if it is a name of 1 to `longest` letters, digits, '.', '_' or '-', starting with a letter
    or digit (a model's, a sweep's); ValueError saying so otherwise (a pydantic validator's message)."""
    if not re.fullmatch(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{longest - 1}}}", value):
        raise ValueError(f"must be 1 to {longest} letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


class Strict(BaseModel):
    """The base of every file schema (params, sweep files): unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvConfig(Strict):
    id: str = "ALE/SpaceInvaders-v5"
    frame_skip: int = Field(4, ge=1, le=16, description="emulator frames per agent step")
    sticky_action_prob: float = Field(0.25, ge=0.0, le=1.0, description="ALE repeat_action_probability")
    observation: Literal["deepmind", "raw"] = Field(
        "deepmind", description="deepmind: 84x84 grayscale, max-pooled over skipped frames; raw: 210x160 RGB"
    )
    noop_max: int = Field(30, ge=0, le=1000, description="random no-ops at episode start (deepmind only)")
    max_episode_steps: int = Field(27_000, ge=1, description="agent steps before an episode is truncated")
    clip_rewards: bool = Field(True, description="train on sign(reward); scores are always reported raw")
    terminal_on_life_loss: bool = Field(
        True, description="training only: a lost life ends the agent's episode (the game plays on)"
    )


class BaselineConfig(Strict):
    episodes: int = Field(30, ge=1, le=10_000)


class ModelConfig(Strict):
    architecture: Literal["nature", "seed"] = "nature"
    dueling: Literal["avg", "max", "none"] = "avg"


class EpsilonConfig(Strict):
    start: float = Field(1.0, ge=0.0, le=1.0)
    end: float = Field(0.01, ge=0.0, le=1.0)
    anneal_steps: int = Field(30_000, ge=1, description="steps over which epsilon falls linearly from start to end")
    test: float = Field(0.01, ge=0.0, le=1.0, description="epsilon of keras-rl2's test policy")


class PrioritizedConfig(Strict):
    enabled: bool = Field(True, description="prioritized experience replay (proportional); off: uniform sampling")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="priority = (|TD error| + epsilon) ** alpha")
    beta_start: float = Field(0.4, gt=0.0, le=1.0, description="importance-sampling exponent, annealed to 1 over training")
    epsilon: float = Field(1e-6, gt=0.0, le=1.0, description="added to |TD error|, so every transition keeps a chance to be drawn")


class AgentConfig(Strict):
    window_length: int = Field(4, ge=1, le=64, description="frames stacked into one state")
    memory_limit: int = Field(100_000, ge=1, description="replay memory capacity in transitions")
    gamma: float = Field(0.99, gt=0.0, le=1.0)
    batch_size: int = Field(32, ge=1, le=4096)
    learning_rate: float = Field(1e-4, gt=0.0, le=1.0)
    warmup_steps: int = Field(10_000, ge=0, description="steps of acting before the first gradient step")
    target_update: int = Field(1_000, ge=1, description="steps between hard target-network updates")
    train_interval: int = Field(4, ge=1, description="env steps per gradient step")
    double_dqn: bool = True
    n_step: int = Field(3, ge=1, le=100, description="steps of the return before bootstrapping (1: one-step DQN)")
    prioritized: PrioritizedConfig = PrioritizedConfig()
    delta_clip: float = Field(1.0, gt=0.0, description="Huber loss threshold; .inf gives the squared loss")
    precision: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="training arithmetic: bfloat16 runs the convolutions and hidden dense layers in bfloat16"
        " (Keras mixed precision; weights, Q head, loss and Adam stay float32): faster on CPUs with"
        " AVX512_BF16 or AMX, other numerics; saved networks are float32 either way",
    )
    epsilon: EpsilonConfig = EpsilonConfig()
    head: Literal["scalar", "quantile"] = Field(
        "scalar", description="scalar: one Q-value per action (DQN); quantile: `quantiles` return quantiles per"
        " action (QR-DQN, Dabney et al. 2018), acting on their mean, trained with the quantile Huber loss"
        " (threshold `delta_clip`)",
    )
    quantiles: int = Field(32, ge=2, le=256, description="return quantiles per action of the quantile head")
    augment: Literal["none", "shift"] = Field(
        "none", description="replayed batches only: shift: each state padded 4 pixels (edge) and cropped back at"
        " a random offset (DrQ), s and s' independently, from the replay memory's seeded stream",
    )

    @property
    def head_quantiles(self) -> int | None:
        """The network's quantiles per action: `quantiles` for the quantile head, None for the scalar one."""
        return self.quantiles if self.head == "quantile" else None

    @model_validator(mode="after")
    def _consistent(self) -> AgentConfig:
        if self.memory_limit < self.batch_size:
            raise ValueError(f"memory_limit ({self.memory_limit}) must be at least batch_size ({self.batch_size})")
        least = max(self.batch_size, self.window_length + 2)
        if self.warmup_steps < least:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be at least {least}, to fill a batch of windows before"
                " the first gradient step"
            )
        if self.window_length > self.memory_limit:
            raise ValueError(f"window_length ({self.window_length}) must not exceed memory_limit ({self.memory_limit})")
        if self.n_step + self.window_length + 2 > self.memory_limit:
            raise ValueError(f"n_step ({self.n_step}) must be at most memory_limit - window_length - 2"
                             f" ({self.memory_limit - self.window_length - 2})")
        return self


class TrainConfig(Strict):
    steps: int = Field(300_000, ge=1, description="agent steps of training")
    log_every: int = Field(1_000, ge=1, description="steps between MLflow step-level metrics (loss, mean Q)")
    checkpoint_every: int = Field(10_000, ge=1, description="steps between checkpoints of the whole training state")
    eval_every: int = Field(25_000, ge=1, description="steps between validation rounds (and one at the end)")
    eval_episodes: int = Field(10, ge=0, le=1000, description="validation episodes per round; 0: no validation")
    keep: Literal["best", "last"] = Field(
        "best", description="which network becomes data/train/model.keras: the best-validated one or the last"
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.eval_episodes and self.eval_every > self.steps:
            raise ValueError(f"eval_every ({self.eval_every}) must not exceed steps ({self.steps})")
        if self.keep == "best" and self.eval_episodes == 0:
            raise ValueError("keep 'best' needs validation: eval_episodes must be at least 1 (or keep: last)")
        return self


class EvaluateConfig(Strict):
    episodes: int = Field(100, ge=1, le=10_000)
    epsilon: float = Field(0.01, ge=0.0, le=1.0)
    video: bool = Field(True, description="record the first evaluation episode as MP4")
    parallel_episodes: int = Field(
        8, ge=1, le=256, description="episodes played side by side, one batched forward pass a step (validation,"
        " `invaders play` and `invaders evaluate` too); each episode's score depends on its seed and this")


class MlflowConfig(Strict):
    experiment: str = Field("invaders", min_length=1)


class PromoteConfig(Strict):
    model_name: str = Field("invaders-dqn", description="MLflow registered model name")
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="significance level of the one-sided Welch t-tests")
    min_episodes: int = Field(
        5, ge=2, le=10_000, description="episodes each side of a comparison needs before it can be significant"
    )

    @field_validator("model_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, 128)


class ReproducibilityConfig(Strict):
    mode: Literal["portable", "native"] = Field(
        "portable",
        description="portable: the same outputs on any x86-64 CPU with AVX2 and any core count (oneDNN and XLA"
        " capped to AVX2, TensorFlow on `threads` threads); native: TensorFlow's fastest code paths and"
        " all cores, the same outputs only on the same machine type",
    )
    threads: int = Field(2, ge=1, le=256, description="portable: TensorFlow's intra- and inter-op threads for training"
                         " (playing uses one); native ignores it")


class Params(Strict):
    seed: int = Field(0, ge=0, le=2**31 - 1)
    env: EnvConfig = EnvConfig()
    baseline: BaselineConfig = BaselineConfig()
    model: ModelConfig = ModelConfig()
    agent: AgentConfig = AgentConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    mlflow: MlflowConfig = MlflowConfig()
    promote: PromoteConfig = PromoteConfig()
    reproducibility: ReproducibilityConfig = ReproducibilityConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        needs = {"nature": "deepmind", "seed": "raw"}[self.model.architecture]
        if self.env.observation != needs:
            raise ValueError(
                f"model.architecture {self.model.architecture!r} needs env.observation {needs!r}"
                f" (got {self.env.observation!r})"
            )
        if self.agent.warmup_steps >= self.train.steps:
            raise ValueError(
                f"agent.warmup_steps ({self.agent.warmup_steps}) must be less than train.steps ({self.train.steps})"
            )
        return self

    def stream_seed(self, stream: Literal["train", "validation", "baseline", "evaluate", "replay"]) -> int:
        """The seed of one of the run's random streams, derived from `seed`.

        The training env, the validation episodes, the random baseline and the evaluate stage
        each play their own episodes, so the reported score is never measured on the episodes
        that selected the network, and the replay sampler draws from a stream of its own.
        """
        digest = hashlib.sha256(f"invaders/{self.seed}/{stream}".encode()).digest()
        return int.from_bytes(digest[:4], "little") & 0x7FFF_FFFF

    def flat(self) -> dict[str, object]:
        """Dotted keys in declaration order, for MLflow params."""
        out: dict[str, object] = {}

        def walk(prefix: str, value: object) -> None:
            if isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    walk(f"{prefix}{name}.", getattr(value, name))
            else:
                out[prefix[:-1]] = value

        walk("", self)
        return out


def describe(error: dict) -> str:
    """One pydantic error as one line naming the key: what is wrong and, for a choice, what is allowed."""
    key = named(".".join(str(p) for p in error["loc"])) or "params"
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key"
    if kind == "literal_error":
        allowed = msg.split("Input should be ", 1)[-1]
        return f"{key}: got {shown(error['input'])}, allowed: {allowed}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "value_error":  # a validator's message names its keys; a whole-params one needs no prefix
        return f"{key}: {msg}" if error["loc"] else msg
    return f"{key}: {msg} (got {shown(error['input'])})"


def parse_params(raw: object, source: str = "params") -> Params:
    """Validate a mapping; raise ParamsError with a one-line message naming the key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{source}: {describe(exc.errors()[0])}") from None
    _check_env_id(params.env.id, source)
    return params


def read_yaml(path: Path, error: type[UserError], what: str) -> object:
    """The YAML document in `path`; `error` with one line for a file that is missing, unreadable, not
    text or not YAML (`what` names the file in the missing case: "params file", "sweep file")."""
    where = named(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{where}: no such {what}") from None
    except (OSError, ValueError) as exc:  # a directory, no permission; ValueError: a NUL byte in the path
        raise error(f"{where}: not readable ({getattr(exc, 'strerror', None) or first_line(exc)})") from None
    try:
        return yaml.safe_load(data)  # bytes: PyYAML decodes UTF-8 or, with a BOM, UTF-16
    except yaml.reader.ReaderError as exc:  # not UTF-8 (or UTF-16) text, or a character YAML does not allow
        if exc.encoding != "unicode":  # PyYAML's word for text it has decoded
            raise error(f"{where}: not {exc.encoding} text ({exc.reason} at byte {exc.position})") from None
        raise error(f"{where}: not valid YAML (character {chr(exc.character)!r} at position {exc.position} is not"
                    " allowed)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise error(f"{where}:{f' line {mark.line + 1}' if mark else ''} not valid YAML") from None
    except RecursionError:
        raise error(f"{where}: not valid YAML (nested too deeply)") from None
    # A value PyYAML cannot construct: an integer of over 4300 digits, a 30 February, `!!timestamp x`.
    except (ValueError, TypeError, AttributeError) as exc:
        raise error(f"{where}: not valid YAML (a value PyYAML cannot construct: {first_line(exc, 100)})") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    return parse_params(read_yaml(path, ParamsError, "params file"), named(path))


# The games ale-py 0.12 registers, as `ALE/<game>-v5`: a table, so validating params needs neither
# gymnasium nor the emulator (tests/base/test_config.py checks it against ale-py's registry).
ALE_GAMES = frozenset("""
Adventure AirRaid Alien Amidar Assault Asterix Asteroids Atlantis Atlantis2 Backgammon BankHeist BasicMath
BattleZone BeamRider Berzerk Blackjack Bowling Boxing Breakout Carnival Casino Centipede ChopperCommand
CrazyClimber Crossbow Darkchambers Defender DemonAttack DonkeyKong DoubleDunk Earthworld ElevatorAction Enduro
Entombed Et FishingDerby FlagCapture Freeway Frogger Frostbite Galaxian Gopher Gravitar Hangman HauntedHouse
Hero HumanCannonball IceHockey Jamesbond JourneyEscape Kaboom Kangaroo KeystoneKapers KingKong Klax Koolaid
Krull KungFuMaster LaserGates LostLuggage MarioBros MiniatureGolf MontezumaRevenge MrDo MsPacman NameThisGame
Othello Pacman Phoenix Pitfall Pitfall2 Pong Pooyan PrivateEye Qbert Riverraid RoadRunner Robotank Seaquest
SirLancelot Skiing Solaris SpaceInvaders SpaceWar StarGunner Superman Surround Tennis Tetris TicTacToe3D
TimePilot Trondead Turmoil Tutankham UpNDown Venture VideoCheckers VideoChess VideoCube VideoPinball
WizardOfWor WordZapper YarsRevenge Zaxxon
""".split())
ALE_ENV_IDS = frozenset(f"ALE/{game}-v5" for game in ALE_GAMES)


def _check_env_id(env_id: str, source: str) -> None:
    known = ALE_ENV_IDS
    if env_id not in known:
        close = sorted(i for i in known if i.split("/")[-1].split("-")[0].lower() in env_id.lower())
        hint = f" (did you mean {close[0]}?)" if close else " (an ALE id such as ALE/SpaceInvaders-v5)"
        raise ParamsError(f"{source}: env.id: {shown(env_id)} is not a registered ALE environment{hint}")
