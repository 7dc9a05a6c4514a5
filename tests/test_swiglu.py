"""The lean MLP forward: same values and gradients as transformers' LlamaMLP, one saved tensor fewer."""

import torch

from mathverify.model.swiglu import SiluTimesUp, use_lean_mlp


def test_silu_times_up_gradients_match_autograd():
    gate = torch.randn(3, 5, 7, dtype=torch.float64, requires_grad=True)
    up = torch.randn(3, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SiluTimesUp.apply, (gate, up))
    torch.testing.assert_close(SiluTimesUp.apply(gate, up), torch.nn.functional.silu(gate) * up)


def _saved_bytes(fn) -> int:
    """Bytes of distinct tensors autograd keeps for the backward pass of fn() (parameters excluded)."""
    seen = {}

    def pack(t):
        if not isinstance(t, torch.nn.Parameter):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def test_lean_mlp_equals_llama_mlp_and_keeps_less(tiny_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    def build():
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float64)
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["gate_proj", "up_proj", "down_proj"],
                            init_lora_weights=False)
        return get_peft_model(base, config)

    plain, lean = build(), build()
    assert use_lean_mlp(lean) == plain.get_base_model().config.num_hidden_layers
    x = torch.randn(2, 9, plain.get_base_model().config.hidden_size, dtype=torch.float64)
    mlp_plain = plain.get_base_model().model.layers[0].mlp
    mlp_lean = lean.get_base_model().model.layers[0].mlp
    out_plain, kept_plain = _saved_bytes(lambda: mlp_plain(x))
    out_lean, kept_lean = _saved_bytes(lambda: mlp_lean(x))
    torch.testing.assert_close(out_lean, out_plain, rtol=0, atol=0)
    intermediate = x.shape[0] * x.shape[1] * mlp_plain.up_proj.out_features * 8  # one [B, T, I] float64
    assert kept_plain - kept_lean == intermediate
    out_plain.pow(2).sum().backward()
    out_lean.pow(2).sum().backward()
    grads = {n: p.grad for n, p in plain.named_parameters() if p.requires_grad}
    checked = 0
    for name, p in lean.named_parameters():
        if p.requires_grad and "layers.0." in name:
            torch.testing.assert_close(p.grad, grads[name], rtol=1e-10, atol=1e-12, msg=name)
            checked += 1
    assert checked == 6  # gate/up/down x (lora_A, lora_B)
