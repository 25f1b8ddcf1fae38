"""`make bench`'s arithmetic: the gradient step's FLOPs, oneDNN's timings parsed, the goals' verdicts."""

import sys

import pytest
from conftest import REPO

from invaders.config import Params
from invaders.rl.model import build_q_network

sys.path.insert(0, str(REPO / "benchmarks"))
import run  # noqa: E402
import step_profile  # noqa: E402

pytestmark = pytest.mark.unit


def test_the_defaults_gradient_step_counts_what_the_arithmetic_by_hand_gives():
    # By hand (issue 23): the Nature CNN with a dueling head, 9.35 M multiply-adds a state; a double-DQN step
    # at batch 32 is three forward passes and one backward pass (no gradient for the frames): 2.78 GFLOP.
    params = Params()
    model = build_q_network(params.model, (84, 84), params.agent.window_length, 6)
    macs = step_profile.multiply_adds(model)
    assert list(macs.values())[:3] == [20 * 20 * 32 * 8 * 8 * 4, 9 * 9 * 64 * 4 * 4 * 32, 7 * 7 * 64 * 3 * 3 * 64]
    assert sum(macs.values()) == pytest.approx(9.35e6, rel=0.002)
    assert step_profile.step_flop(model, 32) == pytest.approx(2.78e9, rel=0.002)


def test_onednn_lines_are_summed_per_op_and_shape_with_their_flops():
    conv = "mb32_ic4oc32_ih84oh20kh8sh4dh0ph0_iw84ow20kw8sw4dw0pw0"
    line = "onednn_verbose,v1,primitive,exec,cpu,{kind},{impl},{prop},src_f32::blocked:acdb,,alg:x,{problem},{ms}"
    text = "\n".join([
        line.format(kind="convolution", impl="brg_conv_fwd:avx2", prop="forward_training", problem=conv, ms=0.5),
        line.format(kind="convolution", impl="brg_conv_fwd:avx2", prop="forward_training", problem=conv, ms=0.3),
        line.format(kind="reorder", impl="jit:uni", prop="undef", problem="32x4x84x84", ms=0.1),
        "onednn_verbose,v1,info,oneDNN v3.2.1",  # not a primitive's execution
    ])
    rows = step_profile.parse_verbose(text, steps=2)
    assert [(r["op"], r["ms"]) for r in rows] == [("convolution forward_training", pytest.approx(0.4)),
                                                 ("reorder", pytest.approx(0.05))]
    flop = 2.0 * 32 * 4 * 32 * 20 * 20 * 8 * 8
    assert rows[0]["gflops"] == pytest.approx(2 * flop / (0.8 * 1e6))
    assert rows[1]["gflops"] == 0.0


def test_each_goal_is_reported_met_or_not_against_its_threshold(capsys):
    run.print_goals((1.49, 1.51), 0.89, 1499.9, 8)
    out = capsys.readouterr().out
    assert "(all steps): 1.49x, NOT met" in out
    assert "(after warmup 1000): 1.51x, met" in out
    assert "FMA peak: 89%, met" in out
    assert "(8 at a time): 1499.9, NOT met" in out
