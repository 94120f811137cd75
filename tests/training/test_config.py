"""Configuration: flags and YAML recipes validate once, with errors naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from megatron_bgpo.training.config import (
    FAST_DECODING,
    GenerationArgs,
    add_fast_decoding_flags,
    fast_decoding_args,
    parse_args,
)

RECIPES = sorted((Path(__file__).resolve().parents[2] / "examples" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipes_parse(recipe: Path) -> None:
    cfg = parse_args(["--config", str(recipe)])
    if recipe.name.startswith("just_grpo"):  # JustGRPO's own settings: AR rollouts, lr 5e-6
        assert cfg.rl.objective == "just_grpo" and cfg.rl.ar_block_length == 1
        assert cfg.generation.block_length == 1 and cfg.optim.lr == 5e-6
        return
    assert cfg.rl.objective == "bgpo" and cfg.generation.block_length == 32 and cfg.optim.lr == 5e-7
    assert cfg.rl.mc_coupling == ("complementary" if "complementary" in recipe.name else "independent")


def test_flags_override_recipe_and_megatron_aliases() -> None:
    cfg = parse_args(
        [
            "--config",
            str(RECIPES[0]),
            "--tp",
            "4",
            "--pipeline-model-parallel-size",
            "2",
            "--num-mc-samples",
            "8",
            "--mini-batch-size",
            "8",
        ]
    )
    assert cfg.parallel.tensor_model_parallel_size == 4 and cfg.parallel.pipeline_model_parallel_size == 2
    assert cfg.rl.num_mc_samples == 8 and cfg.rl.updates_per_rollout == 2 and not cfg.rl.on_policy


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--objective", "ppo"], "--objective 'ppo' unknown"),
        (["--rollout-batch-size", "10", "--mini-batch-size", "4"], "must be a multiple of --mini-batch-size"),
        (["--gen-length", "100", "--block-length", "32"], "--gen-length \\(100\\) must be a multiple"),
        (
            ["--gen-length", "64", "--block-length", "32", "--diffusion-steps", "3"],
            "--diffusion-steps \\(3\\)",
        ),
        (["--group-size", "1"], "--group-size must be >= 2"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--params-dtype", "fp8"], "--params-dtype must be fp32 or bf16"),
        (["--config", "/no/such.yaml"], "recipe not found"),
        (["--mc-t-sampling", "sobol"], "--mc-t-sampling must be stratified or iid, got 'sobol'"),
        (["--mc-coupling", "antithetic"], "--mc-coupling must be independent or complementary"),
        (
            ["--mc-coupling", "complementary", "--num-mc-samples", "3"],
            "--mc-coupling complementary needs an even --num-mc-samples, got 3",
        ),
        (["--ar-block-length", "0"], "--ar-block-length must be >= 1, got 0"),
        (["--elbo-tokens", "answer"], "--elbo-tokens: 'answer'"),
        (["--eval-gen-length", "500"], "--eval-gen-length \\(500\\) must be a multiple of --block-length"),
        (["--eval-gen-length", "512", "--eval-diffusion-steps", "24"], "--eval-diffusion-steps \\(24\\)"),
        (["--lr", "inf"], "--lr must be > 0 and finite, got inf"),
        (["--lr", "1e38"], r"--lr 1e\+38 is too large: Adam's first step .* = 1e\+39 overflows float32"),
        (["--lr", "1e-3", "--min-lr", "1e-2"], r"--min-lr \(0.01\) must not exceed --lr \(0.001\)"),
        (["--adam-beta1", "1"], r"--adam-beta1 must be in \[0, 1\), got 1.0"),
        (["--block-length", "0"], "--block-length must be >= 1, got 0"),
        (["--masking-eps", "0"], r"--masking-eps must be in \(0, 1\)"),
        (["--keep-last", "-1"], "--keep-last must be >= 0, got -1"),
        (["--max-skipped-steps", "0"], "--max-skipped-steps must be >= 1, got 0"),
        (["--load-fallback", "true"], "--load-fallback needs --load"),
        (["--kl-beta", "0.01"], "--kl-beta 0.01 is not supported: training keeps no frozen reference model"),
        (["--threshold", "1.5"], r"--threshold must be in \[0, 1\), got 1.5"),
        (["--prefix-cache", "true", "--dual-cache", "on"], "--prefix-cache and --dual-cache are exclusive"),
    ],
)
def test_bad_settings_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_args(argv)


def test_fidelity_flags_reach_masking_advantages_and_eval() -> None:
    default = parse_args([])
    spec = default.rl.masking_spec(eos_id=7)
    assert (spec.stratified, spec.count, spec.mode, spec.eps, spec.eos_id) == (
        True,
        "canvas",
        "continuous",
        1e-3,
        7,
    )
    assert default.rl.std_normalized_advantages
    assert (default.generation.eval_length, default.generation.eval_steps) == (256, 128)
    cfg = parse_args(
        ["--mc-t-sampling", "iid", "--elbo-tokens", "first_eos", "--masking-mode", "discrete"]
        + ["--eval-gen-length", "512", "--eval-diffusion-steps", "512"]
    )
    spec = cfg.rl.masking_spec(eos_id=7)
    assert (spec.stratified, spec.count, spec.mode) == (False, "first_eos", "discrete")
    assert (cfg.generation.eval_length, cfg.generation.eval_steps) == (512, 512)
    assert (cfg.generation.gen_length, cfg.generation.diffusion_steps) == (256, 128)
    assert not parse_args(["--objective", "diffu_grpo"]).rl.std_normalized_advantages  # d1: r - mean
    on = parse_args(["--objective", "diffu_grpo", "--advantage-std-normalize", "true"])
    assert on.rl.std_normalized_advantages
    assert not parse_args(["--advantage-std-normalize", "false"]).rl.std_normalized_advantages


def test_unknown_recipe_key(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("objective: bgpo\nnum_mc_sampels: 4\n")
    with pytest.raises(ValueError, match=r"unknown configuration keys: \['num_mc_sampels'\]"):
        parse_args(["--config", str(recipe)])


@pytest.mark.parametrize("name", ["sudoku", "sudoku_brief"])
def test_sudoku_tasks_generate_data_without_a_source(name: str) -> None:
    from megatron_bgpo.tasks import get_task
    from megatron_bgpo.training.resources import load_examples

    task = get_task(name)
    train, test = load_examples(task, None, "train", seed=0), load_examples(task, None, "test", seed=0)
    assert (len(train), len(test)) == (2000, 256)


@pytest.mark.parametrize(
    "argv,world,message",
    [
        (["--tp", "2"], 3, r"world size 3 is not divisible by tensor_model_parallel_size \(2\)"),
        (
            ["--rollout-batch-size", "6", "--mini-batch-size", "6"],
            4,
            r"--rollout-batch-size \(6\) must be divisible by the data-parallel size \(4 = world size 4",
        ),
        (
            ["--rollout-batch-size", "8", "--mini-batch-size", "2", "--tp", "2"],
            8,
            r"--mini-batch-size \(2\) must be divisible by the data-parallel size \(4 = world size 8",
        ),
    ],
)
def test_batch_sizes_must_split_over_data_parallel_ranks(argv: list[str], world: int, message: str) -> None:
    from megatron_bgpo.training.config import check_world

    with pytest.raises(ValueError, match=message):
        check_world(parse_args(argv), world)


def test_check_world_returns_the_data_parallel_size() -> None:
    from megatron_bgpo.training.config import check_world

    cfg = parse_args(["--tp", "2", "--mini-batch-size", "8", "--rollout-batch-size", "8"])
    assert check_world(cfg, 8) == 4


class _Tok:
    mask_id, eos_id, eot_id = 5, 2, 3


def test_generation_args_build_the_sampler_config() -> None:
    """One place builds the SamplerConfig: training flags and the tools' flags reach it unchanged."""
    default = parse_args([]).generation.sampler(_Tok)
    assert (default.gen_length, default.steps, default.block_length, default.temperature) == (
        256,
        128,
        32,
        0.9,
    )
    assert (default.mask_id, default.eos_id, default.stop_ids) == (5, 2, (3,))
    assert default.threshold is None and not any(getattr(default, f) for f in FAST_DECODING[1:])
    argv = ["--threshold", "0.9", "--dual-cache", "true", "--early-exit", "yes", "--compact-rows", "1"]
    on = parse_args(argv).generation.sampler(_Tok)
    assert (on.threshold, on.dual_cache, on.early_exit, on.compact_rows) == (0.9, True, True, True)
    assert not on.prefix_cache and not on.fill_after_eos
    import argparse

    tool = argparse.ArgumentParser()
    add_fast_decoding_flags(tool)
    ns = tool.parse_args(["--threshold", "0.7", "--prefix-cache", "--fill-after-eos"])
    cfg = GenerationArgs(gen_length=64, diffusion_steps=32, **fast_decoding_args(ns)).sampler(_Tok)
    assert (cfg.threshold, cfg.prefix_cache, cfg.fill_after_eos, cfg.dual_cache) == (0.7, True, True, False)
    assert (cfg.gen_length, cfg.steps) == (64, 32)
