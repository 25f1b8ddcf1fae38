"""Bad input by the thousand: hypothesis strategies for the files a user gives (params, sweep files, model
files, checkpoints), the check every case must pass, and the tally `make fuzz` prints.

Every generated case must be either accepted as valid or refused with a UserError whose message is one
short line; any other exception, a message of several lines or one past `LONGEST` characters is a
failure. The suite runs a bounded number of cases per target (the `ci` profile); `make fuzz`
(HYPOTHESIS_PROFILE=fuzz) runs `FUZZ_FACTOR` times as many and prints, per target, how many cases were
tried and how many failed. Both profiles are derandomized: the same cases every run.
"""

from __future__ import annotations

import math
import os
import string
import zipfile
from collections import Counter
from pathlib import Path

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from invaders.errors import UserError

REPO = Path(__file__).resolve().parents[1]
LONGEST = 400  # characters of a one-line message (paths here are short; a value is shown cut)
FUZZ_FACTOR = 20
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
common = dict(deadline=None, derandomize=True, database=None, print_blob=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile("ci", **common)
settings.register_profile("fuzz", **common)
settings.load_profile(PROFILE if PROFILE in ("ci", "fuzz") else "ci")

# target -> Counter(tried, accepted, refused, failed); conftest's terminal summary prints it.
TALLY: dict[str, Counter] = {}
FAILURES: dict[str, list[str]] = {}


def cases(n: int) -> settings:
    """`n` cases per target in the suite, FUZZ_FACTOR times as many under `make fuzz`."""
    return settings(max_examples=n * FUZZ_FACTOR if PROFILE == "fuzz" else n)


def one_line(message: str) -> bool:
    return message.splitlines() == [message] and 0 < len(message) <= LONGEST


def check(target: str, load, *args, describe=lambda: ""):
    """Run `load(*args)`: its result if accepted, the UserError if refused; a failure otherwise. In the suite
    a failure raises (hypothesis then shrinks the case); under `make fuzz` it is counted and the run goes on,
    and the test fails at the end with the distinct failures (`failed`)."""
    tally = TALLY.setdefault(target, Counter())
    tally["tried"] += 1
    try:
        result = load(*args)
    except UserError as exc:
        if one_line(str(exc)):
            tally["refused"] += 1
            return exc
        failure = f"refused in {len(str(exc).splitlines())} lines / {len(str(exc))} characters: {str(exc)[:300]!r}"
    except Exception as exc:  # noqa: BLE001 - what the fuzzing is for
        failure = f"{type(exc).__module__}.{type(exc).__qualname__}: {str(exc)[:200]}"
    else:
        tally["accepted"] += 1
        return result
    tally["failed"] += 1
    if PROFILE != "fuzz":
        raise AssertionError(f"{target}: {failure} {describe()}")
    FAILURES.setdefault(target, [])
    if failure not in FAILURES[target] and len(FAILURES[target]) < 20:
        FAILURES[target].append(f"{failure} {describe()}"[:600])
    return None


def failed(target: str) -> None:
    """After a target's @given run: the distinct failures `make fuzz` counted, if any."""
    assert not FAILURES.get(target), f"{target}: {TALLY[target]['failed']} failed:\n" + "\n".join(FAILURES[target])


# --- values ---------------------------------------------------------------------------------------------

# Scalars PyYAML reads as something else than they look, or cannot construct, or refuses.
RAW_SCALARS = ["9" * 5000, "-" + "1" * 4301, "0x" + "f" * 40, "0o777", "1_000", "0b101", "1e3", ".nan", "-.inf",
               ".inf", "~", "yes", "off", "2020-02-30", "2020-13-01", "2001-12-14t21:59:43.10-05:00",
               "!!binary QUxFL1NwYWNlSW52YWRlcnMtdjU=", "!!binary ===", "!!python/object:os.system x",
               "!!timestamp nonsense", "!!float abc", "!!int 1.5", "*nowhere", "&a [*a]", "[", "{a: 1", '"open',
               "'", "!!set {a, b}", "!!omap [a: 1]", "[" * 2000 + "]" * 2000, "{a: " * 2000 + "1" + "}" * 2000,
               "|\n  a\n  b", "!custom 1", "%YAML 1.1", "---", "...", "? [1]\n: 2"]


def scalars():
    return st.one_of(
        st.none(), st.booleans(),
        st.integers(), st.integers(min_value=-2**70, max_value=2**70), st.sampled_from([2**31 - 1, 2**31, 2**63, -1, 0]),
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, -math.inf, 1e308, 5e-324]),
        st.text(max_size=20), st.text(alphabet=string.printable, max_size=12),
        st.sampled_from(["", " ", "\n", "yes", "NO", "null", "1e3", "ALE/Pong-v5", "ALE/SpaceInvaders-v5", "nature",
                         "seed", "raw", "avg", "best", "last", "portable", "native", "float32", "bfloat16",
                         "a\nb", "\x00", "\u2028", "é" * 50, "x" * 300]),
    )


def values():
    return st.recursive(scalars(), lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                           st.dictionaries(keys(), inner, max_size=3)), max_leaves=6)


def misspelled(name: str):
    """`name` with one letter dropped, doubled, swapped or changed, or its case changed."""
    def spell(data):
        kind, i, c = data
        i %= max(len(name), 1)
        return {"drop": name[:i] + name[i + 1:], "double": name[:i + 1] + name[i:], "case": name.upper(),
                "swap": name[:i] + name[i + 1:i + 2] + name[i:i + 1] + name[i + 2:],
                "change": name[:i] + c + name[i + 1:], "space": name + " "}[kind]
    return st.tuples(st.sampled_from(["drop", "double", "swap", "change", "case", "space"]), st.integers(0, 99),
                     st.sampled_from("aeiorstnx_.-1")).map(spell).filter(lambda s: s != name)


def keys():
    return st.one_of(st.text(max_size=12), st.integers(-3, 3), st.none(), st.booleans(), st.floats(allow_nan=False))


# --- documents: a mapping with placeholders for raw YAML, then text- and byte-level damage --------------

def raw(i: int) -> str:
    return f"ZQXRAW{i}"  # a plain scalar safe_dump leaves unquoted: replaced by raw YAML after dumping


def dump(tree, raws: list[str]) -> bytes:
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=10_000)
    for i, snippet in enumerate(raws):
        text = text.replace(raw(i), snippet.replace("\n", "\n" + " " * 8) if "\n" in snippet else snippet, 1)
    return text.encode("utf-8", errors="surrogatepass")


def damaged(text: bytes):
    """`text` cut, with bytes inserted, changed or removed, re-encoded, or replaced by other bytes."""
    def damage(data):
        kind, i, j, blob = data
        i, j = i % (len(text) + 1), j % (len(text) + 1)
        i, j = min(i, j), max(i, j)
        return {"cut": text[:i], "insert": text[:i] + blob + text[i:], "replace": text[:i] + blob + text[j:],
                "remove": text[:i] + text[j:], "latin1": text.decode("utf-8", "replace").encode("latin-1", "replace")
                + b"\xe9\xff", "utf16": text.decode("utf-8", "replace").encode("utf-16"),
                "utf16-nobom": text.decode("utf-8", "replace").encode("utf-16-le"), "bom": b"\xef\xbb\xbf" + text,
                "binary": blob * 8, "empty": b"", "crlf": text.replace(b"\n", b"\r\n"),
                "tabs": text.replace(b"  ", b"\t")}[kind]
    return st.tuples(st.sampled_from(["cut", "insert", "replace", "remove", "latin1", "utf16", "utf16-nobom", "bom",
                                      "binary", "empty", "crlf", "tabs"]),
                     st.integers(0, 10**6), st.integers(0, 10**6),
                     st.one_of(st.binary(max_size=12), st.sampled_from([b":", b"- ", b"\t", b"{", b"[", b"&a ",
                                                                        b"*a", b"!!", b"\x00", b"\xff", b"\n  x: 1"]))
                     ).map(damage)


def sections(tree: dict, path: tuple = ()) -> list[tuple]:
    """The paths of `tree`'s mappings, itself included."""
    found = [path]
    for key, value in tree.items():
        if isinstance(value, dict):
            found += sections(value, path + (key,))
    return found


def at(tree: dict, path: tuple) -> dict:
    for key in path:
        tree = tree[key]
    return tree


def mutated(base: dict, leaf_values):
    """`base` after one to four mutations at any level: a key set to a boundary or wrong-typed value, a
    misspelled or unknown key, a key removed, a section replaced; values may be raw YAML."""
    import copy

    @st.composite
    def build(draw):
        tree, raws = copy.deepcopy(base), []
        for _ in range(draw(st.integers(1, 4))):
            section = at(tree, draw(st.sampled_from(sections(tree))))
            names = list(section)
            kind = draw(st.sampled_from(["value", "boundary", "misspell", "unknown", "remove", "raw", "section"]))
            if kind == "misspell" and names:
                name = draw(st.sampled_from(names))
                section[draw(misspelled(str(name)))] = section.pop(name)
            elif kind == "unknown":
                section[draw(keys())] = draw(values())
            elif kind == "remove" and names:
                section.pop(draw(st.sampled_from(names)))
            elif kind == "raw" and names:
                section[draw(st.sampled_from(names))] = raw(len(raws))
                raws.append(draw(st.sampled_from(RAW_SCALARS)))
            elif kind == "section" and names:
                section[draw(st.sampled_from(names))] = draw(values())
            elif names:
                name = draw(st.sampled_from(names))
                section[name] = draw(leaf_values(name, section[name]) if kind == "boundary" else values())
        return tree, raws
    return build()


def documents(base: dict, leaf_values):
    """YAML files made from `base`: mutated mappings, some of them damaged as text or bytes, and others."""
    made = mutated(base, leaf_values).map(lambda tree_raws: dump(*tree_raws))
    return st.one_of(made, made, made, made.flatmap(damaged), st.binary(max_size=200),
                     st.sampled_from([b"", b"\n", b"---\n", b"- 1\n", b"null\n", b"a", b"[]", b"\xff\xfe\x00",
                                      b"\xef\xbb\xbf", b"\x00" * 10]))


# --- params ---------------------------------------------------------------------------------------------

def _fields():
    """Dotted params key -> its pydantic field, for the boundary values of its declared range."""
    from pydantic import BaseModel

    from invaders.config import Params

    out = {}

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                walk(field.annotation, f"{prefix}{name}.")
            else:
                out[name] = out.get(name, []) + [field]
    walk(Params, "")
    return out


FIELDS = _fields()


def boundaries(name, current):
    """Values at and just past the declared range of the key `name` (any key of that name), and near misses
    of its choices."""
    import typing

    candidates = [current]
    for field in FIELDS.get(name, []):
        for rule in field.metadata:
            for attr in ("ge", "gt", "le", "lt"):
                bound = getattr(rule, attr, None)
                if bound is None:
                    continue
                if isinstance(bound, int) and not isinstance(bound, bool):
                    candidates += [bound - 1, bound, bound + 1]
                candidates += [float(bound), math.nextafter(float(bound), math.inf),
                               math.nextafter(float(bound), -math.inf)]
        for choice in typing.get_args(field.annotation):
            if isinstance(choice, str):
                candidates += [choice, choice.upper(), f" {choice}", choice[:-1]]
    if isinstance(current, bool):
        candidates += [not current, 0, 1, "true", "True"]
    elif isinstance(current, (int, float)):
        candidates += [current * 2, -current, current + 0.5, str(current), 0, math.nan, math.inf]
    return st.sampled_from(candidates)


def params_base() -> dict:
    return yaml.safe_load((REPO / "presets" / "smoke.yaml").read_text())


def params_documents():
    return documents(params_base(), boundaries)


# --- sweep files ----------------------------------------------------------------------------------------

def dotted_keys() -> list[str]:
    from invaders.config import Params

    return list(Params().flat())


def distributions():
    number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70),
                       st.sampled_from([0, 1, 0.5, 1e-300, 1e308, -1e308, 2**63, 2**63 - 1, -2**63]), st.text(max_size=3))
    pair = st.one_of(st.lists(number, min_size=0, max_size=3), st.tuples(number, number).map(list))
    return st.one_of(
        st.fixed_dictionaries({"uniform": pair}), st.fixed_dictionaries({"loguniform": pair}),
        st.fixed_dictionaries({"randint": pair}), st.fixed_dictionaries({"choice": st.lists(scalars(), max_size=4)}),
        st.dictionaries(st.sampled_from(["uniform", "loguniform", "randint", "choice", "normal"]), pair, max_size=3),
        values())


def sweep_base(params: str) -> dict:
    return {"name": "fuzz", "params": params, "base": {"agent.gamma": 0.95}, "seeds": [0, 1],
            "grid": {"agent.learning_rate": [0.0001, 0.0003], "agent.n_step": [1, 3]},
            "random": {"samples": 2, "seed": 0, "space": {"agent.gamma": {"uniform": [0.9, 0.99]}}},
            "resources": {"cpus": 1, "memory_gb": 2}, "metric": "eval_mean_reward",
            "asha": {"grace_steps": 100, "reduction_factor": 2}, "max_failures": 3, "storage": "data/ray"}


def sweep_leaves(params: str):
    """Boundary and near-miss values of a sweep file's keys, grids that expand to invalid combinations."""
    known = dotted_keys()
    grid_values = st.lists(st.one_of(scalars(), st.sampled_from([0, 1, 16, 32, 100, 300, 1000, 4096, 10**6])),
                           min_size=0, max_size=3)
    grids = st.one_of(
        st.dictionaries(st.one_of(st.sampled_from(known), st.sampled_from(known).flatmap(misspelled), keys()),
                        grid_values, max_size=3),
        # valid values one by one that together break a rule: warmup >= steps, memory < batch, n-step > memory ...
        st.fixed_dictionaries({"agent.warmup_steps": st.lists(st.sampled_from([32, 100, 299, 300, 301]), min_size=1,
                                                              max_size=3),
                               "train.steps": st.lists(st.sampled_from([1, 100, 300]), min_size=1, max_size=2)}),
        st.fixed_dictionaries({"agent.memory_limit": st.lists(st.sampled_from([1, 8, 40, 1000]), min_size=1, max_size=2),
                               "agent.batch_size": st.lists(st.sampled_from([1, 32, 64, 4096]), min_size=1, max_size=2),
                               "agent.n_step": st.lists(st.sampled_from([1, 50, 100]), min_size=1, max_size=2)}),
        st.fixed_dictionaries({"model.architecture": st.lists(st.sampled_from(["nature", "seed", "x"]), min_size=1,
                                                              max_size=2),
                               "train.eval_episodes": st.lists(st.sampled_from([0, 1]), min_size=1, max_size=2)}),
        # a grid of ten keys: millions of settings, refused before they are made
        st.just({k: list(range(1, 11)) for k in ("agent.batch_size", "agent.n_step", "agent.target_update",
                                                 "agent.train_interval", "train.log_every", "train.checkpoint_every",
                                                 "env.noop_max", "baseline.episodes", "evaluate.episodes", "seed")[:-1]}),
    )

    base_values = st.one_of(scalars(), st.sampled_from([0, 1, 32, 100, 300, 301, 10**6, "quantile", "shift"]))
    bases = st.dictionaries(st.one_of(st.sampled_from(known), st.sampled_from(known).flatmap(misspelled), keys()),
                            base_values, max_size=3)

    def leaf(name, current):
        if name == "grid":
            return grids
        if name == "base":
            return bases
        if name == "space":
            return st.dictionaries(st.one_of(st.sampled_from(known), keys()), distributions(), max_size=3)
        if name in ("uniform", "loguniform", "randint", "choice"):
            return distributions().map(lambda d: d.get(name, d) if isinstance(d, dict) else d)
        if name == "seeds":
            return st.one_of(st.lists(st.integers(-2, 2**31 + 1), max_size=5), st.lists(scalars(), max_size=3),
                             st.just(list(range(20_000))), st.just([0, 0]))
        if name == "params":
            return st.sampled_from([params, params + "x", "/", "", "presets", "a\x00b", "\n", str(REPO / "dvc.yaml"),
                                    "bad-params.yaml", "binary-params.yaml"])
        if name == "name":
            return st.one_of(st.text(max_size=70), st.sampled_from(["", "a" * 64, "a" * 65, "-x", "x/y", "ok.name_1"]))
        if name == "metric":
            return st.sampled_from(["eval_mean_reward", "val_best_mean_reward", "val_mean_reward", "", "EVAL_MEAN_REWARD"])
        return st.one_of(st.sampled_from([current, 0, 1, -1, 2, 16, 17, 100, 101, 256, 257, 1000, 1001, 2**63, 0.5,
                                          math.nan, math.inf, -math.inf, None, "", "1"]), values())
    return leaf


def sweep_documents(params: str):
    return documents(sweep_base(params), sweep_leaves(params))


# --- model files ----------------------------------------------------------------------------------------

FRAME, WINDOW, ACTIONS = (8, 8), 4, 6  # a tiny Q-network's shape: fast to load, as a real one would be checked


def json_mutations(config: dict):
    """A Keras config after one to three changes: a value set to any JSON, a key removed or misspelled, a
    layer's class made another one (a Lambda among them)."""
    import copy

    def nodes(tree, path=()):
        out = [path]
        items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
        for key, value in items:
            out += nodes(value, path + (key,))
        return out

    all_paths = nodes(config)
    json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                                         st.text(max_size=10), st.sampled_from(
                                             ["Lambda", "Functional", "Sequential", "Dense", "InputLayer", "keras.layers",
                                              "builtins", "os", "eval", "tf_keras.src.engine.functional", "float16",
                                              "uint8", "relu", "__import__"])),
                               lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                               max_leaves=5)

    @st.composite
    def build(draw):
        tree = copy.deepcopy(config)
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(all_paths))
            if not path:
                continue
            parent = tree
            try:  # an earlier change may have replaced what the path went through
                for key in path[:-1]:
                    parent = parent[key]
                parent[path[-1]]
            except (KeyError, IndexError, TypeError):
                continue
            if not isinstance(parent, (dict, list)):
                continue
            kind = draw(st.sampled_from(["value", "remove", "lambda", "class"]))
            if kind == "remove":
                parent.pop(path[-1]) if isinstance(parent, dict) else parent.pop(path[-1])
            elif kind == "lambda" and isinstance(parent[path[-1]], dict) and "class_name" in parent[path[-1]]:
                parent[path[-1]]["class_name"] = "Lambda"
                parent[path[-1]].setdefault("config", {})
                if isinstance(parent[path[-1]]["config"], dict):
                    parent[path[-1]]["config"]["function"] = {"class_name": "__lambda__", "config": {
                        "code": "4wEAAAAAAAAA", "defaults": None, "closure": None}}
            elif kind == "class" and isinstance(parent[path[-1]], dict) and "class_name" in parent[path[-1]]:
                parent[path[-1]]["class_name"] = draw(st.sampled_from(
                    ["Lambda", "Dense", "Conv2D", "Flatten", "Functional", "Sequential", "Model", "TFOpLambda",
                     "Nope", ""]))
            else:
                parent[path[-1]] = draw(json_values)
        return tree
    return build()


def zip_entries(entries: dict[str, bytes]) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            try:
                z.writestr(name, data)
            except (IndexError, ValueError):  # a name zipfile cannot write ("/"): leave it out
                pass
    return buf.getvalue()


def model_files(good: bytes, lambda_model: bytes):
    """Model files made from a good one: cut, with bytes flipped, random bytes, a zip whose config,
    metadata or weights were changed or removed, a model with a Lambda layer."""
    import io
    import json

    with zipfile.ZipFile(io.BytesIO(good)) as z:
        entries = {info.filename: z.read(info) for info in z.infolist()}
    config = json.loads(entries["config.json"])

    def flips(data):
        spots, bits = data
        out = bytearray(good)
        for spot, bit in zip(spots, bits):
            out[spot % len(out)] ^= 1 << (bit % 8)
        return bytes(out)

    def with_entry(name, content):
        return zip_entries({**entries, name: content})

    def without(name):
        return zip_entries({k: v for k, v in entries.items() if k != name})

    return st.one_of(
        st.integers(0, len(good) - 1).map(lambda n: good[:n]),
        st.tuples(st.lists(st.integers(0, 10**7), min_size=1, max_size=4),
                  st.lists(st.integers(0, 7), min_size=4, max_size=4)).map(flips),
        st.binary(max_size=300), st.just(lambda_model),
        json_mutations(config).map(lambda c: with_entry("config.json", json.dumps(c).encode())),
        st.one_of(st.binary(max_size=40), st.sampled_from([b"[]", b"null", b"{}", b"1", b'"x"', b"{", b"\xff"])).map(
            lambda b: with_entry("config.json", b)),
        st.one_of(st.binary(max_size=40), st.sampled_from([b"[]", b"{}", b'{"keras_version": 1}'])).map(
            lambda b: with_entry("metadata.json", b)),
        st.binary(max_size=200).map(lambda b: with_entry("model.weights.h5", b)),
        st.integers(0, len(entries["model.weights.h5"])).map(
            lambda n: with_entry("model.weights.h5", entries["model.weights.h5"][:n])),
        st.sampled_from(sorted(entries)).map(without),
        st.dictionaries(st.text(min_size=1, max_size=10), st.binary(max_size=20), max_size=3).map(zip_entries),
    )


# --- checkpoints ----------------------------------------------------------------------------------------

def trailer(body: bytes) -> bytes:
    """`body` as a checkpoint file: its SHA-256 and the magic after it."""
    import hashlib

    from invaders.rl.checkpoint import MAGIC

    return body + hashlib.sha256(body).digest() + MAGIC


def npz(**arrays) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy(array) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def checkpoint_files(good: bytes):
    """Checkpoint files made from a good one: cut, bytes flipped, random bytes; and files whose trailer is
    right but whose bytes are not a checkpoint's (changed and checksummed again, a .npy, odd metadata)."""
    import numpy as np

    def flips(data, again=False):
        spots, values_ = data
        body = bytearray(good[:-48] if again else good)
        for spot, value in zip(spots, values_):
            body[spot % len(body)] = value
        return trailer(bytes(body)) if again else bytes(body)

    spots = st.tuples(st.lists(st.integers(0, 10**7), min_size=1, max_size=4),
                      st.lists(st.integers(0, 255), min_size=4, max_size=4))
    return st.one_of(
        st.integers(0, len(good) - 1).map(lambda n: good[:n]),
        spots.map(flips),
        spots.map(lambda d: flips(d, again=True)),
        st.binary(max_size=200), st.binary(max_size=200).map(trailer),
        st.text(max_size=30).map(lambda meta: trailer(npz(__meta__=np.array(meta)))),
        st.sampled_from(["[]", "null", "1", '"x"', "{", '{"fingerprint": 1}', '{"step": 1}']).map(
            lambda meta: trailer(npz(__meta__=np.array(meta)))),
        st.just(trailer(npy(np.arange(3)))), st.just(trailer(npz(x=np.arange(3)))),
        st.just(trailer(npz(__meta__=np.array([1.5])))),
    )


def summary(write) -> None:
    """Per target: cases tried, accepted, refused and failed (conftest's terminal summary calls this)."""
    for target, tally in TALLY.items():
        write(f"fuzz {target}: {tally['tried']} cases tried, {tally['accepted']} accepted, {tally['refused']} refused,"
              f" {tally['failed']} failed")

