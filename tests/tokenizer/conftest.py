"""Shared fixtures: the LLaDA config from ../shared/data, a generated corpus, small trained tokenizers."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from megatron_bgpo.tokenizer import HFTokenizer, SentencePieceTokenizer, train_sentencepiece
from megatron_bgpo.tokenizer.constants import LLADA_BOS_ID, LLADA_CHAT_TEMPLATE, llada_added_tokens

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LLADA_DIR = SHARED_DATA / "llada_8b_instruct"

_WORDS = (
    "the a of to and in is it you that he was for on are with as his they be at one have this from or had by "
    "word but what some we can out other were all there when up use your how said an each she which do their "
    "time if will way about many then them write would like so these her long make thing see him two has "
    "look more day could go come did number sound no most people my over know water than call first who"
).split()
_NAMES = ("Janet", "Tom", "Maria", "Li", "Sam", "Ava")
_ITEMS = ("apples", "eggs", "books", "coins", "marbles", "pencils")


def make_corpus(n: int, seed: int) -> list[str]:
    """``n`` GSM8K-like chat transcripts with d1-style reasoning/answer tags (deterministic in ``seed``)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        a, b = rng.randint(1, 999), rng.randint(1, 999)
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        filler = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 20)))
        question = f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have? {filler}."
        answer = (
            f"<reasoning>\n{name} has {a} + {b} = {a + b} {item}.\n</reasoning>\n<answer>\n{a + b}\n</answer>"
        )
        texts.append(
            "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n"
            f"{question}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n{answer}<|eot_id|><|endoftext|>"
        )
    return texts


@pytest.fixture(scope="session")
def llada_config() -> dict[str, Any]:
    """LLaDA-8B-Instruct's real tokenizer_config.json (skips when ../shared/data is absent)."""
    path = LLADA_DIR / "tokenizer_config.json"
    if not path.is_file():
        pytest.skip(f"shared LLaDA tokenizer config not found at {path}")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def spm_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> SentencePieceTokenizer:
    """A 600-piece BPE SentencePiece model trained on the generated corpus, saved in a tmp folder."""
    return train_sentencepiece(make_corpus(1500, seed=0), 600, tmp_path_factory.mktemp("spm"))


def build_llada_like_hf_dir(directory: Path, config: dict[str, Any] | None = None) -> Path:
    """Write ``tokenizer.json`` (tiny byte-level BPE, vocab padded with unused fillers so that LLaDA's 269
    added tokens sit at their real ids 126080-126348) and a ``tokenizer_config.json`` (the given one, or
    one built from the constants) into ``directory``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    base = Tokenizer(models.BPE())
    base.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(
        vocab_size=500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    base.train_from_iterator(make_corpus(300, seed=1), trainer)
    model = json.loads(base.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    for i in range(len(vocab), LLADA_BOS_ID):
        vocab[f"<|unused_{i}|>"] = i
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    added = llada_added_tokens()
    tok.add_special_tokens([AddedToken(added[i], special=True, normalized=False) for i in sorted(added)])
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    if config is None:
        config = {
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "chat_template": LLADA_CHAT_TEMPLATE,
            "added_tokens_decoder": {str(i): {"content": t, "special": True} for i, t in added.items()},
        }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HF tokenizer folder shaped like LLaDA's (the real config when ../shared/data has it)."""
    real = LLADA_DIR / "tokenizer_config.json"
    config = json.loads(real.read_text()) if real.is_file() else None
    return build_llada_like_hf_dir(tmp_path_factory.mktemp("hf"), config)


@pytest.fixture(scope="session")
def hf_tokenizer(hf_dir: Path) -> HFTokenizer:
    return HFTokenizer.from_dir(hf_dir)
