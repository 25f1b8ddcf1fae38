"""Params files by the thousand (tests/fuzz.py): wrong types, boundary and out-of-range values, NaN and
infinities, huge integers, unknown and misspelled keys at every level, YAML syntax errors, empty, binary
and non-UTF-8 files. Each is accepted as valid params or refused in one line; the cases the fuzzing
found are kept below as plain tests."""

import math

import pytest
import yaml
from fuzz import check, failed, params_base, params_documents, cases
from hypothesis import given

from invaders.config import Params, ParamsError, load_params, parse_params

pytestmark = pytest.mark.unit


def test_params_files_are_accepted_or_refused_in_one_line(tmp_path):
    path = tmp_path / "params.yaml"

    @cases(200)
    @given(params_documents())
    def one(document: bytes):
        path.write_bytes(document)
        result = check("params", load_params, path, describe=lambda: repr(document[:300]))
        if isinstance(result, Params):  # accepted: valid through and through, and the same once more
            assert parse_params(result.model_dump()) == result
            assert all(not (isinstance(v, float) and math.isnan(v)) for v in result.flat().values())
        elif result is not None:
            assert isinstance(result, ParamsError) and str(result).startswith(f"{path}")

    one()
    failed("params")


# Found by the fuzzing: each was a traceback (or a hang) before it was one line.
@pytest.mark.parametrize("content, says", [
    (b"seed: \xff\xfe\n", "not utf-8 text (invalid start byte at byte 6)"),
    (b"seed: 1\x00\n", "not valid YAML (character '\\x00' at position 7 is not allowed)"),
    (b"seed: " + b"9" * 5000 + b"\n", "not valid YAML (a value PyYAML cannot construct: Exceeds the limit (4300 digits) for integer"),
    (b"agent: {gamma: " + b"1" * 4301 + b"}\n", "not valid YAML (a value PyYAML cannot construct: Exceeds the limit (4300 digits)"),
    (b"seed: 2020-02-30\n", "not valid YAML (a value PyYAML cannot construct: day is out of range for month)"),
    (b"seed: !!timestamp nonsense\n", "not valid YAML (a value PyYAML cannot construct: 'NoneType' object has no"),
    (b"seed: " + b"[" * 2000 + b"]" * 2000 + b"\n", "not valid YAML (nested too deeply)"),
    (b"agent: " + b"{a: " * 2000 + b"1" + b"}" * 2000 + b"\n", "not valid YAML (nested too deeply)"),
])
def test_what_pyyaml_cannot_read_or_construct_is_one_line(tmp_path, content, says):
    (tmp_path / "params.yaml").write_bytes(content)
    with pytest.raises(ParamsError) as err:
        load_params(tmp_path / "params.yaml")
    assert str(err.value).startswith(f"{tmp_path / 'params.yaml'}: {says}"), str(err.value)
    assert "\n" not in str(err.value)


def test_a_directory_or_a_utf16_file(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ParamsError, match=r"dir.yaml: not readable \(Is a directory\)"):
        load_params(tmp_path / "dir.yaml")
    (tmp_path / "utf16.yaml").write_text("seed: 5\n", encoding="utf-16")  # with its BOM: YAML allows it
    assert load_params(tmp_path / "utf16.yaml").seed == 5


def test_an_alias_bomb_is_refused_at_once_and_shown_short(tmp_path):
    """A billion laughs: 9 ** 9 items by reference. Quoting the value once took longer than anyone waits."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    (tmp_path / "params.yaml").write_text("\n".join(lines) + "\nseed: *a8\n")
    with pytest.raises(ParamsError) as err:
        load_params(tmp_path / "params.yaml")
    assert str(err.value).startswith(f"{tmp_path / 'params.yaml'}: seed: Input should be a valid integer (got [[[...],")
    assert len(str(err.value)) < 400


@pytest.mark.parametrize("override, says", [
    ({"env": {"id": "ALE/Pong\nv5"}}, r"env.id: 'ALE/Pong\nv5' is not a registered ALE environment"),
    ({"agent": {"gama\n": 1}}, r"params.yaml: 'agent.gama\n': unknown key"),
    ({"env": {"id": "x" * 10_000}}, "env.id: 'xxxxxxxxxxxxxxxxxxxx"),
])
def test_a_value_or_key_with_a_line_break_or_of_any_length_is_shown_in_one_short_line(override, says):
    from conftest import merge

    with pytest.raises(ParamsError) as err:
        parse_params(merge(params_base(), override), "params.yaml")
    message = str(err.value)
    assert message.splitlines() == [message] and len(message) < 300 and says in message, message


def test_yaml_booleans_and_numbers_as_text_are_still_checked():
    base = params_base()
    assert load_dumped(base).seed == 0
    with pytest.raises(ParamsError, match=r"env.clip_rewards: Input should be a valid boolean"):
        parse_params({**base, "env": {**base["env"], "clip_rewards": "sometimes"}})


def load_dumped(tree):
    return parse_params(yaml.safe_load(yaml.safe_dump(tree)))
