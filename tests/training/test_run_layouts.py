"""Several optimizer steps of the same run give the same numbers on 1 process and on 2 data-parallel
ranks (catches gradient double-counting across steps, not only within one update)."""

from __future__ import annotations

import pytest
import torch

from tests.distributed import run_distributed
from tests.training.test_resume import _train_rank
from tests.training.tiny_setup import flags, make_tiny_run


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


def test_three_sft_steps_single_process_equals_data_parallel(files) -> None:
    argv = flags(files, objective="elbo_sft", train_steps=3)
    (single,) = run_distributed(_train_rank, 1, argv)
    dp = run_distributed(_train_rank, 2, argv)
    for a, b in zip(single["metrics"], dp[0]["metrics"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-6)
    for a, b in zip(single["params"], dp[0]["params"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
