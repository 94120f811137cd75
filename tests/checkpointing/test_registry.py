"""The architecture registry: dispatch by config.json, iLLaDA config parsing (mask id from the tokenizer),
clear errors, LLaDA-1.5 through the LLaDA entry, and an iLLaDA HF -> Megatron (TP/PP) -> HF round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from megatron_bgpo.checkpointing.hf_io import INDEX_FILE, CheckpointError, HFCheckpoint, read_hf_config
from megatron_bgpo.checkpointing.mappings import (
    architecture_for,
    hf_config_of,
    load_config,
    parse_hf_config,
    special_token_ids,
)
from megatron_bgpo.checkpointing.mappings.base import hf_shapes
from megatron_bgpo.checkpointing.megatron_io import read_checkpoint_config
from megatron_bgpo.checkpointing.synthetic import write_random_hf_checkpoint
from megatron_bgpo.models.llada import LLaDAConfig, get_preset
from tests.checkpointing.conftest import SHARD_SIZE
from tests.checkpointing.test_convert import _export_rank, _import_rank
from tests.distributed import run_distributed

# An iLLaDA config.json as the published one is shaped (field names of modeling_illada.py; the sizes are
# the tiny test model's, not iLLaDA-8B's): no mask_token_id, the tokenizer defines <[MASK]> = 5.
ILLADA_CONFIG = {
    "architectures": ["ILLaDAForCausalLM"],
    "auto_map": {"AutoConfig": "configuration_illada.ILLaDAConfig"},
    "model_type": "illada",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "layer_norm_eps": None,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": True,
    "vocab_size": 256,
    "eos_token_id": 2,
    "pad_token_id": 2,
    "bos_token_id": 1,
}
TOKENIZER_CONFIG = {"added_tokens_decoder": {"5": {"content": "<[MASK]>", "special": True}}}


def test_dispatch_by_architectures_then_model_type() -> None:
    llada = get_preset("tiny").to_dict()
    assert architecture_for(llada).name == "llada"
    assert architecture_for({"model_type": "llada"}).name == "llada"
    assert architecture_for(ILLADA_CONFIG).name == "illada"
    assert architecture_for({"architectures": ["ILLaDAForCausalLM"], "model_type": "llada"}).name == "illada"
    with pytest.raises(
        ValueError, match=r"unknown architecture model_type='qwen2'.*known architectures: .*illada"
    ):
        architecture_for({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]})
    # an architecture the registry does not know is not taken for a family sharing its model_type
    # (LLaDA-MoE reuses model_type "llada"; its converter entry is not registered yet)
    with pytest.raises(ValueError, match=r"architectures=\['LLaDAMoEModelLM'\]; known architectures"):
        architecture_for({"model_type": "llada", "architectures": ["LLaDAMoEModelLM"]})


def test_illada_config_mask_id_from_tokenizer(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(ILLADA_CONFIG))
    with pytest.raises(ValueError, match=r"no mask_token_id and no tokenizer file .* defines <\[MASK\]>"):
        load_config(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    cfg = load_config(tmp_path)
    assert (cfg.family, cfg.mask_token_id, cfg.eos_token_id, cfg.pad_token_id) == ("illada", 5, 2, 2)
    assert cfg.weight_tying and (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (4, 2, 16)
    assert cfg.max_sequence_length == 8192 and cfg.rope_theta == 10000.0 and cfg.embedding_size == 256
    assert LLaDAConfig.from_json(tmp_path) == cfg  # the typed config's reader dispatches too
    # tokenizer.json's added_tokens list is read as well; the exported config states the id.
    (tmp_path / "tokenizer_config.json").unlink()
    (tmp_path / "tokenizer.json").write_text(json.dumps({"added_tokens": [{"id": 5, "content": "<[MASK]>"}]}))
    assert special_token_ids(tmp_path) == {"<[MASK]>": 5}
    out = hf_config_of(cfg)
    assert out == {**ILLADA_CONFIG, "mask_token_id": 5}
    assert parse_hf_config(out) == cfg


@pytest.mark.parametrize(
    "change,message",
    [
        ({"layer_norm_eps": 1e-5}, "layer_norm_eps=1e-05 is not supported"),
        ({"attention_bias": True}, "attention_bias=True is not supported"),
        ({"hidden_act": "gelu"}, "hidden_act='gelu' is not supported"),
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling=.* is not supported"),
        ({"rope_theta": None}, r"missing required iLLaDA fields \['rope_theta'\]"),
        ({"num_key_value_heads": 3}, "n_heads=4 is not divisible by n_kv_heads=3"),
        ({"mask_token_id": 7}, r"mask_token_id=7 but the tokenizer has <\[MASK\]>=5"),
        ({"eos_token_id": [2, 3]}, "a list"),
    ],
)
def test_illada_config_errors_name_the_field(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hf_config({**ILLADA_CONFIG, **change}, {"<[MASK]>": 5})


def test_illada_shapes_are_one_tied_embedding() -> None:
    shapes = hf_shapes(get_preset("illada-tiny"))
    assert "lm_head.weight" not in shapes and shapes["model.embed_tokens.weight"] == (256, 64)
    assert shapes["model.layers.3.self_attn.k_proj.weight"] == (32, 64)  # 2 KV heads x head_dim 16
    untied = hf_shapes(get_preset("illada-tiny").replace(weight_tying=False))
    assert untied["lm_head.weight"] == (256, 64)


def test_llada_15_loads_through_the_llada_entry(shared_data: Path) -> None:
    """LLaDA-1.5 has LLaDA-8B-Instruct's architecture. No LLaDA-1.5 config.json is in the store; its
    published model card and weight index are (QuentinFitteRey/LLada-Reasoning: modelling_final/README.md
    "LLaDA 1.5 ... VRPO", modelling_final/model.safetensors.index.json): the index names exactly
    LLaDA's tensors (``model.transformer.`` wte, blocks.0-31 x 9, ln_f, untied ff_out) with total_size
    16031162368 bytes. So LLaDA-8B-Instruct's config.json (shared data) is taken as LLaDA-1.5's."""
    cfg = load_config(shared_data / "llada_8b_instruct")
    assert cfg.family == "llada" and cfg == get_preset("llada-8b")
    assert (
        architecture_for(json.loads((shared_data / "llada_8b_instruct" / "config.json").read_text())).name
        == "llada"
    )
    names = set(hf_shapes(cfg))
    assert len(names) == 32 * 9 + 3 and "model.transformer.ff_out.weight" in names
    assert cfg.num_parameters * 2 == 16031162368  # bf16 bytes of the index's total_size


@pytest.fixture(scope="module")
def illada_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny iLLaDA HF folder: its config.json (no mask id), tokenizer_config.json with <[MASK]> = 5,
    by-type shards of random fp32 weights (one embedding tensor, no lm_head), a modeling-code placeholder."""
    root = tmp_path_factory.mktemp("illada") / "illada-hf"
    cfg = parse_hf_config(ILLADA_CONFIG, {"<[MASK]>": 5})
    write_random_hf_checkpoint(root, cfg, seed=4, shard_size=SHARD_SIZE, side_files=False)
    (root / "config.json").write_text(json.dumps({**ILLADA_CONFIG, "torch_dtype": "float32"}, indent=2))
    (root / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    (root / "modeling_illada.py").write_text("# iLLaDA modeling code (placeholder)\n")
    return root


@pytest.mark.parametrize("tp,pp", [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_illada_round_trip_bit_exact(tp: int, pp: int, illada_hf: Path, tmp_path: Path) -> None:
    """import --verify (every tensor bit-exact per rank, logits = reference within 1e-5) then export:
    same shards and index bit for bit, one embedding tensor, config.json plus the stated mask id."""
    megatron, out = tmp_path / "megatron", tmp_path / "hf"
    ((report, *_), *_) = run_distributed(_import_rank, tp * pp, tp, pp, [(illada_hf, megatron)])
    assert report["verify"]["tensor_mismatches"] == 0 and report["verify"]["logits_rel_err"] < 1e-5
    cfg = read_checkpoint_config(megatron)
    assert cfg.family == "illada" and cfg.mask_token_id == 5 and cfg.weight_tying
    ((exported,),) = run_distributed(_export_rank, 1, [(megatron, out)])
    assert exported["verify"]["tensor_mismatches"] == 0
    src, dst = HFCheckpoint(illada_hf), HFCheckpoint(out)
    assert json.loads((out / INDEX_FILE).read_text()) == json.loads((illada_hf / INDEX_FILE).read_text())
    assert "lm_head.weight" not in dst.tensors and "model.embed_tokens.weight" in dst.tensors
    for name in src.tensors:
        assert torch.equal(src.read(name), dst.read(name)), name
    assert json.loads((out / "config.json").read_text()) == {
        **ILLADA_CONFIG,
        "torch_dtype": "float32",
        "mask_token_id": 5,
    }
    for side in ("tokenizer_config.json", "modeling_illada.py"):
        assert (out / side).read_bytes() == (illada_hf / side).read_bytes()


def test_illada_import_errors(illada_hf: Path, tmp_path: Path) -> None:
    """A stored lm_head next to tied embeddings, and a config/weights shape mismatch, are named."""
    bad = tmp_path / "bad"
    bad.mkdir()
    for p in illada_hf.iterdir():
        (bad / p.name).write_bytes(p.read_bytes())
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "intermediate_size": 96}))
    with pytest.raises(CheckpointError, match="shape mismatch: model.layers.0.mlp.gate_proj.weight"):
        HFCheckpoint(bad).check(load_config(bad))
    (bad / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    with pytest.raises(CheckpointError, match="tensor missing: lm_head.weight"):
        HFCheckpoint(bad).check(load_config(bad))
    (bad / "config.json").write_text(
        json.dumps({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]})
    )
    with pytest.raises(CheckpointError, match="unknown architecture model_type='qwen2'.*known architectures"):
        read_hf_config(bad)


def test_tied_checkpoint_with_a_stored_lm_head_is_rejected(illada_hf: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = HFCheckpoint(illada_hf)
    weights = {name: src.read(name) for name in src.tensors}
    weights["lm_head.weight"] = weights["model.embed_tokens.weight"].clone()
    save_file(weights, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((illada_hf / "config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    with pytest.raises(CheckpointError, match=r"unexpected tensors \['lm_head.weight'\].*tied output layer"):
        HFCheckpoint(tmp_path).check(load_config(tmp_path))


@pytest.mark.slow
def test_cli_torchrun_import_pp2_then_export(illada_hf: Path, tmp_path: Path) -> None:
    """The real entry point on an iLLaDA folder: torchrun import at PP=2 --verify, then CLI export."""
    import os
    import subprocess
    import sys

    from tests.checkpointing.test_cli import REPO, TOOL, _export_main_rank, _reports
    from tests.distributed import free_port

    megatron, out = tmp_path / "megatron", tmp_path / "hf"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
    ]
    cmd += [str(TOOL), "import", "--hf-dir", str(illada_hf), "--out", str(megatron), "--pp", "2", "--verify"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    imported = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert all(r["verify"]["logits_rel_err"] < 1e-5 for r in _reports(imported.stdout))
    argv = [
        "export",
        "--megatron-dir",
        str(megatron),
        "--out",
        str(out),
        "--shard-size",
        SHARD_SIZE,
        "--verify",
    ]
    ((codes, stdout, stderr),) = run_distributed(_export_main_rank, 1, argv)
    assert codes[0] == 0, stderr
    src, dst = HFCheckpoint(illada_hf), HFCheckpoint(out)
    assert sorted(dst.tensors) == sorted(src.tensors)
    assert all(torch.equal(src.read(n), dst.read(n)) for n in src.tensors)
