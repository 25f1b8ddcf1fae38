"""The reproducibility tests again, with the quantile head and random-shift replays on (agent.head, agent.augment).

A module of its own so that pytest-xdist's loadscope can run it beside the defaults' module, on the other worker.
"""

import pytest
from test_reproducibility import built_project
from test_reproducibility import test_forced_rerun_is_byte_identical  # noqa: F401 (collected here, on this project)
from test_reproducibility import test_killed_training_resumes_to_the_same_outputs  # noqa: F401

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return built_project(tmp_path_factory, {"agent": {"head": "quantile", "quantiles": 8, "augment": "shift"}})
