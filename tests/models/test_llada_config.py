"""LLaDAConfig parsing and parallel-layout validation: clear errors that name the problem."""

from __future__ import annotations

import json

import pytest

from megatron_bgpo.models.llada import LLaDAConfig, get_preset, validate_layout
from megatron_bgpo.parallel import ParallelConfig


def test_real_config_matches_preset_and_parameter_count(shared_data) -> None:
    cfg = LLaDAConfig.from_json(shared_data / "llada_8b_instruct" / "config.json")
    assert cfg == get_preset("llada-8b")
    assert cfg.head_dim == 128
    # Spec §1.1: 8,015,581,184 parameters; bf16 index total_size 16,031,162,368 bytes.
    assert cfg.num_parameters == 8_015_581_184
    assert 2 * cfg.num_parameters == 16_031_162_368
    assert cfg.extra["auto_map"]["AutoModel"] == "modeling_llada.LLaDAModelLM"


def test_round_trip_keeps_unknown_fields(tmp_path, shared_data) -> None:
    cfg = LLaDAConfig.from_json(shared_data / "llada_8b_instruct")
    cfg.to_json(tmp_path / "config.json")
    again = LLaDAConfig.from_json(tmp_path)
    assert again == cfg and again.extra["auto_map"] == cfg.extra["auto_map"]


@pytest.mark.parametrize(
    "change,message",
    [
        ({"alibi": True}, "alibi=True is not supported"),
        ({"block_type": "sequential"}, "block_type='sequential' is not supported"),
        ({"n_heads": 5}, "not divisible by n_heads=5"),
        ({"n_kv_heads": 3}, "n_heads=4 is not divisible by n_kv_heads=3"),
        ({"model_type": "llama"}, "unknown architecture model_type='llama'"),
        ({"embedding_size": 100}, "embedding_size=100 is smaller than vocab_size=256"),
        ({"mask_token_id": 999}, "mask_token_id=999 is outside the embedding"),
        ({"d_model": "64"}, "d_model must be a positive integer"),
    ],
)
def test_malformed_config_fails_with_named_field(change: dict, message: str) -> None:
    data = get_preset("tiny").to_dict()
    data.update(change)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        LLaDAConfig.from_dict(data)


def test_missing_fields_and_bad_json(tmp_path) -> None:
    data = get_preset("tiny").to_dict()
    del data["n_layers"]
    with pytest.raises(ValueError, match=r"missing required LLaDA fields \['n_layers'\]"):
        LLaDAConfig.from_dict(data)
    bad = tmp_path / "config.json"
    bad.write_text('{"d_model": 64,')
    with pytest.raises(ValueError, match="malformed JSON"):
        LLaDAConfig.from_json(bad)
    with pytest.raises(FileNotFoundError, match="LLaDA config not found"):
        LLaDAConfig.from_json(tmp_path / "nowhere")
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="expected a JSON object"):
        LLaDAConfig.from_json(bad)


@pytest.mark.parametrize(
    "tp,pp,preset,message",
    [
        (3, 1, "tiny", "tensor_model_parallel_size=3 does not divide n_heads=4"),
        (4, 1, "tiny-gqa", "tensor_model_parallel_size=4 does not divide n_kv_heads=2"),
        (1, 3, "tiny", "pipeline_model_parallel_size x virtual stages=3 does not divide n_layers=4"),
    ],
)
def test_invalid_layouts(tp: int, pp: int, preset: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_layout(get_preset(preset), ParallelConfig(tp, pp))


def test_world_size_must_tile_layout() -> None:
    assert ParallelConfig(2, 2).data_parallel_size(8) == 2
    with pytest.raises(ValueError, match="world size 6 is not divisible by .* = 4"):
        ParallelConfig(2, 2).data_parallel_size(6)
    with pytest.raises(ValueError, match="tensor_model_parallel_size must be >= 1"):
        ParallelConfig(0, 1)
    with pytest.raises(ValueError, match="virtual_pipeline_model_parallel_size=2 needs"):
        ParallelConfig(1, 1, 2)
