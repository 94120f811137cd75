"""Configuration: flags and YAML recipes validate once, with errors naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from megatron_bgpo.training.config import parse_args

RECIPES = sorted((Path(__file__).resolve().parents[2] / "examples" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipes_parse(recipe: Path) -> None:
    cfg = parse_args(["--config", str(recipe)])
    assert cfg.rl.objective == "bgpo" and cfg.generation.block_length == 32 and cfg.optim.lr == 5e-7


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
    ],
)
def test_bad_settings_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_args(argv)


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
