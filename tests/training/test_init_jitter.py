"""--init-jitter: Gaussian noise of the given std on every weight, identical on every rank for a seed."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.training.config import parse_args
from megatron_bgpo.training.policy import jitter_weights


def _chunks(seed: int) -> list[torch.nn.Module]:
    torch.manual_seed(seed)
    return [torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Linear(128, 32))]


def test_jitter_has_the_asked_std_and_depends_only_on_the_seed() -> None:
    a, b, c = _chunks(0), _chunks(0), _chunks(0)
    before = [p.detach().clone() for p in a[0].parameters()]
    jitter_weights(a, 1e-3, seed=5)
    jitter_weights(b, 1e-3, seed=5)
    jitter_weights(c, 1e-3, seed=6)
    delta = torch.cat([(p.detach() - q).reshape(-1) for p, q in zip(a[0].parameters(), before, strict=True)])
    assert delta.std().item() == pytest.approx(1e-3, rel=0.05)
    assert abs(delta.mean().item()) < 1e-4
    for p, q, r in zip(a[0].parameters(), b[0].parameters(), c[0].parameters(), strict=True):
        assert torch.equal(p, q)  # same seed: same noise (replicated weights stay replicated)
        assert not torch.equal(p, r)


def test_jitter_and_eval_at_start_flags() -> None:
    cfg = parse_args(["--init-jitter", "1e-6", "--eval-at-start", "true", "--eval-interval", "5"])
    assert cfg.model.init_jitter == 1e-6 and cfg.logging.eval_at_start
    with pytest.raises(ValueError, match="--init-jitter"):
        parse_args(["--init-jitter", "-1"])
