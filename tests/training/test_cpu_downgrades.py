"""CPU runs that cannot honour a GPU-only setting say so once (parallel/cpu_compat.py), never silently."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.parallel import cpu_compat

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallbacks only")


def test_bf16_generation_on_cpu_warns_and_uses_fp32(capsys) -> None:
    cpu_compat._WARNED.clear()
    assert cpu_compat.inference_dtype(torch.bfloat16) == torch.float32
    assert "warning: --params-dtype bf16 generates in fp32 on CPU" in capsys.readouterr().out
    assert cpu_compat.inference_dtype(torch.float32) == torch.float32
    assert capsys.readouterr().out == ""
