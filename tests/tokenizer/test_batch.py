"""Left-padded batches: ids, masks and position ids the diffusion sampler expects."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.tokenizer import pad_batch

T, F = True, False


def test_pad_left_hand_written() -> None:
    batch = pad_batch([[5, 6, 7], [8], []], pad_id=0)
    assert torch.equal(batch.input_ids, torch.tensor([[5, 6, 7], [0, 0, 8], [0, 0, 0]]))
    assert torch.equal(batch.attention_mask, torch.tensor([[T, T, T], [F, F, T], [F, F, F]]))
    assert torch.equal(batch.position_ids, torch.tensor([[0, 1, 2], [0, 0, 0], [0, 0, 0]]))
    assert batch.input_ids.dtype == batch.position_ids.dtype == torch.long
    assert batch.attention_mask.dtype == torch.bool
    assert batch.lengths == [3, 1, 0]


def test_pad_right_and_pad_to() -> None:
    batch = pad_batch([[5, 6], [8]], pad_id=9, pad_left=False, pad_to=4)
    assert torch.equal(batch.input_ids, torch.tensor([[5, 6, 9, 9], [8, 9, 9, 9]]))
    assert torch.equal(batch.attention_mask, torch.tensor([[T, T, F, F], [T, F, F, F]]))
    assert torch.equal(batch.position_ids, torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0]]))
    left = pad_batch([[5, 6], [8]], pad_id=9, pad_to=4).to("cpu")
    assert torch.equal(left.input_ids, torch.tensor([[9, 9, 5, 6], [9, 9, 9, 8]]))
    assert torch.equal(left.position_ids, torch.tensor([[0, 0, 0, 1], [0, 0, 0, 0]]))


def test_pad_errors() -> None:
    with pytest.raises(ValueError, match="no sequences"):
        pad_batch([], pad_id=0)
    with pytest.raises(ValueError, match="pad_to=1 is shorter"):
        pad_batch([[1, 2]], pad_id=0, pad_to=1)


def test_hf_batch_encode_llada_ids(hf_tokenizer) -> None:
    texts = ["<|mdm_mask|><|eot_id|>", "<|eot_id|>", "<|startoftext|><|mdm_mask|><|mdm_mask|>"]
    batch = hf_tokenizer.batch_encode(texts)
    assert torch.equal(
        batch.input_ids,
        torch.tensor([[126081, 126336, 126348], [126081, 126081, 126348], [126080, 126336, 126336]]),
    )
    assert torch.equal(batch.attention_mask, torch.tensor([[F, T, T], [F, F, T], [T, T, T]]))
    assert torch.equal(batch.position_ids, torch.tensor([[0, 0, 1], [0, 0, 0], [0, 1, 2]]))
    right = hf_tokenizer.batch_encode(texts, pad_left=False)
    assert right.input_ids[1].tolist() == [126348, 126081, 126081]


def test_spm_batch_encode(spm_tokenizer) -> None:
    tok = spm_tokenizer
    m, e, b, p = tok.mask_id, tok.eot_id, tok.bos_id, tok.pad_id
    batch = tok.batch_encode(["<|mdm_mask|><|eot_id|>", "<|startoftext|><|mdm_mask|><|mdm_mask|>"])
    assert torch.equal(batch.input_ids, torch.tensor([[p, m, e], [b, m, m]]))
    assert torch.equal(batch.attention_mask, torch.tensor([[F, T, T], [T, T, T]]))
    assert torch.equal(batch.position_ids, torch.tensor([[0, 0, 1], [0, 1, 2]]))
    texts = ["Janet has 3 eggs.", "How many?"]
    batch = tok.batch_encode(texts)
    for row, text in enumerate(texts):
        ids = tok.encode(text)
        assert batch.input_ids[row, -len(ids) :].tolist() == ids
        assert int(batch.attention_mask[row].sum()) == len(ids)
        assert batch.position_ids[row, -len(ids) :].tolist() == list(range(len(ids)))
    assert tok.batch_decode(batch.input_ids, skip_special_tokens=True) == texts
