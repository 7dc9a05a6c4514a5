"""The shared-prefix, mask-free forward equals a plain masked forward, values and gradients."""

import pytest
import torch

from mathverify.data.examples import collate_examples
from mathverify.model.heads import last_positions
from mathverify.model.prefix import last_hidden_states, shared_prefix_length


def test_shared_prefix_length_counts_common_leading_tokens():
    ids = torch.tensor([[5, 6, 7, 8, 0], [5, 6, 7, 9, 9], [5, 6, 1, 2, 3]])
    assert shared_prefix_length(ids, torch.tensor([4, 5, 5])) == 2
    same = torch.tensor([[5, 6, 7, 0], [5, 6, 7, 8]])
    # Every row keeps at least its last real token for itself (the row read by the head).
    assert shared_prefix_length(same, torch.tensor([3, 4])) == 2
    assert shared_prefix_length(torch.tensor([[1, 2], [3, 2]]), torch.tensor([2, 2])) == 0


def _lora_model(tiny_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float32, attn_implementation="sdpa")
    # init_lora_weights=False: B is random too, so every LoRA matrix gets a non-zero gradient.
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
                        init_lora_weights=False)
    return get_peft_model(base, config)


def _batch(encoder, tokenizer, n=5):
    rows = [{"question": f"What is {i} + {i}?", "answer": str(2 * i), "solution": "step " * (3 + 9 * i)}
            for i in range(n)]
    ids, _ = encoder.encode(rows)
    return collate_examples([{"input_ids": x} for x in ids], tokenizer.pad_token_id)


def _reference(decoder, batch):
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return last_positions(hidden, batch["lengths"])


def test_shared_prefix_forward_equals_masked_forward(tiny_path, encoder, tokenizer, monkeypatch):
    decoder = _lora_model(tiny_path).get_base_model().get_decoder().eval()
    batch = _batch(encoder, tokenizer)
    assert batch["shared_prefix"] >= 16  # the template's instruction text
    with torch.no_grad():
        expected = _reference(decoder, batch)
        shared = last_hidden_states(decoder, batch["input_ids"], batch["lengths"], 16, batch["shared_prefix"])
        unmasked = last_hidden_states(decoder, batch["input_ids"], batch["lengths"], 0)
    torch.testing.assert_close(shared, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unmasked, expected, rtol=1e-5, atol=1e-5)
    # a decoder without transformers 5's ``cache=`` keyword takes the plain pass, same values
    import mathverify.model.prefix

    monkeypatch.setattr(mathverify.model.prefix, "_supports_prefix_cache", lambda decoder_class: False)
    with torch.no_grad():
        fallback = last_hidden_states(decoder, batch["input_ids"], batch["lengths"], 16, batch["shared_prefix"])
    torch.testing.assert_close(fallback, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_shared_prefix_gradients_equal_plain_gradients(tiny_path, encoder, tokenizer, checkpointing):
    # float64: with random LoRA B matrices this toy model's fp32 gradients differ by ~2 % between two
    # correct kernels (SDPA math vs fused), which would hide a real error; in float64 they agree to 1e-7.
    model = _lora_model(tiny_path).double()
    if checkpointing:  # the recompute in the backward must see the same prefix keys/values
        model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    decoder = model.get_base_model().get_decoder().train()
    batch = _batch(encoder, tokenizer)

    def lora_grads(fn):
        model.zero_grad(set_to_none=True)
        fn().pow(2).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    expected = lora_grads(lambda: _reference(decoder, batch))
    calls = {"decoder": 0, "attention": 0}
    decoder.register_forward_pre_hook(lambda *_: calls.__setitem__("decoder", calls["decoder"] + 1))
    decoder.layers[0].self_attn.register_forward_pre_hook(
        lambda *_: calls.__setitem__("attention", calls["attention"] + 1))
    shared = lora_grads(lambda: last_hidden_states(decoder, batch["input_ids"], batch["lengths"], 16))
    # prefix pass + rows pass; with checkpointing the rows pass runs layer 0 again in the backward
    assert calls == {"decoder": 2, "attention": 3 if checkpointing else 2}
    layers = model.get_base_model().config.num_hidden_layers
    assert expected.keys() == shared.keys() and len(expected) == layers * 5 * 2  # layers x 5 modules x (A, B)
    for name in expected:
        assert expected[name].abs().max() > 0, name
        scale = expected[name].abs().max()
        assert (shared[name] - expected[name]).abs().max() <= 1e-6 * scale, name


@pytest.mark.parametrize("checkpointing", [False, True])
def test_module_forward_in_training_matches_reference(tiny_path, encoder, tokenizer, checkpointing):
    """The module's training forward (shared prefix on, with and without gradient checkpointing,
    whose layers keep the read-only prefix cache for their recompute) equals the masked reference."""
    from mathverify.model.module import VerifierModule

    torch.manual_seed(0)
    module = VerifierModule(backbone=tiny_path, gradient_checkpointing=checkpointing, lora_r=4)
    module.configure_model()
    module.train()
    batch = _batch(encoder, tokenizer)
    causal_lm = module.model.get_base_model()
    expected = module.head(_reference(causal_lm.get_decoder(), batch), causal_lm.get_output_embeddings())
    margin, shift = module.margins(batch["input_ids"], batch["lengths"], batch["shared_prefix"])
    torch.testing.assert_close(margin, expected[:, 1] - expected[:, 0], rtol=1e-5, atol=1e-5)
    assert not shift.any()  # no evidence head
    p_true = module(batch["input_ids"], batch["lengths"], batch["shared_prefix"]).softmax(-1)[:, 1]
    torch.testing.assert_close(p_true, expected.softmax(-1)[:, 1], rtol=1e-5, atol=1e-6)


def test_negative_min_shared_is_a_settings_error():
    from mathverify.errors import SettingsError
    from mathverify.model.module import VerifierModule

    with pytest.raises(SettingsError, match="shared_prefix_min_tokens must be >= 0"):
        VerifierModule(shared_prefix_min_tokens=-1)


def test_flops_per_batch_counts_frozen_4x_trainable_6x_and_the_prefix_once(tiny_path, encoder, tokenizer):
    from mathverify.model.module import VerifierModule

    module = VerifierModule(backbone=tiny_path, lora_r=4)
    module.configure_model()
    cfg = module.model.get_base_model().config
    h, i, kv = cfg.hidden_size, cfg.intermediate_size, cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]  # q k v o gate up down: (in, out)
    frozen = sum(a * b for a, b in shapes)
    lora = sum(4 * (a + b) for a, b in shapes)
    per_token = cfg.num_hidden_layers * (4 * frozen + 6 * lora)
    assert module.flops_per_batch is None  # no training batch yet
    batch = _batch(encoder, tokenizer)
    module._last_train_batch = (batch["lengths"], batch["shared_prefix"], batch["input_ids"])
    rows, shared = len(batch["lengths"]), batch["shared_prefix"]
    assert module.flops_per_batch == per_token * (int(batch["lengths"].sum()) - (rows - 1) * shared)


def test_flops_per_batch_counts_every_token_where_the_decoder_takes_the_plain_pass(tiny_path, encoder, tokenizer,
                                                                                    monkeypatch):
    """A decoder without ``cache=`` (transformers before it, e.g. 5.17 on the GPU image) runs every
    real token: the count must not subtract a prefix that was not shared."""
    import mathverify.model.prefix
    from mathverify.model.module import VerifierModule

    module = VerifierModule(backbone=tiny_path, lora_r=4)
    module.configure_model()
    batch = _batch(encoder, tokenizer)
    assert batch["shared_prefix"] >= module.hparams.shared_prefix_min_tokens  # the shared pass would apply
    module._last_train_batch = (batch["lengths"], batch["shared_prefix"], batch["input_ids"])
    shared_count = module.flops_per_batch
    monkeypatch.setattr(mathverify.model.prefix, "_supports_prefix_cache", lambda decoder_class: False)
    plain_count = module.flops_per_batch
    assert plain_count == module._flops_per_token * int(batch["lengths"].sum())
    assert plain_count > shared_count
