"""Weight decay only on matrices; gradient clipping by global norm, FSDP included."""

import os
import socket
from types import SimpleNamespace

import torch


def test_weight_decay_spares_biases_norms_and_embeddings(tiny_path):
    from mathverify.model.module import VerifierModule
    from mathverify.model.param_groups import parameter_groups

    module = VerifierModule(backbone=tiny_path, lora_r=4, lora_bias="all", modules_to_save=["embed_tokens"])
    module.configure_model()
    module.model.get_base_model().model.norm.weight.requires_grad_(True)  # a trainable RMSNorm scale
    names = {id(p): n for n, p in module.named_parameters()}
    groups = {g["name"]: g for g in parameter_groups(module)}
    decayed = {names[id(p)] for p in groups["decay"]["params"]}
    exempt = {names[id(p)] for p in groups["no_decay"]["params"]}
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert decayed | exempt == trainable and not decayed & exempt
    assert decayed and all("lora_A" in n or "lora_B" in n for n in decayed)
    assert all("norm" in n or "embed" in n for n in exempt)
    assert any("embed_tokens" in n for n in exempt) and any(n.endswith("model.norm.weight") for n in exempt)
    optimizer = module.optimizer_factory(list(groups.values()))
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]

    # Llama's projections have no bias; a plain stack shows biases (and a tied head) are spared too
    embedding, head = torch.nn.Embedding(5, 4), torch.nn.Linear(4, 5)
    head.weight = embedding.weight
    stack = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), embedding, head)
    groups = parameter_groups(stack)
    assert [p is stack[0].weight for p in groups[0]["params"]] == [True]
    assert len(groups[1]["params"]) == 5  # linear bias, norm weight and bias, embedding (= head weight), head bias


def test_gradient_clipping_uses_the_fsdp_root_norm():
    """Lightning refuses norm clipping under FSDP; the module clips through FSDP's own global norm."""
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel

    from mathverify.model.module import VerifierModule

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        wrapped = FullyShardedDataParallel(torch.nn.Linear(8, 8), device_id=torch.device("cpu"), use_orig_params=True)
        wrapped(torch.randn(4, 8)).pow(2).sum().mul(1000).backward()
        module = VerifierModule()
        module._trainer = SimpleNamespace(strategy=SimpleNamespace(model=wrapped))
        module.configure_gradient_clipping(None, 1.0, "norm")
        norm = torch.stack([p.grad.norm() for p in wrapped.parameters()]).norm()
        assert abs(float(norm) - 1.0) < 1e-4
    finally:
        dist.destroy_process_group()
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            os.environ.pop(key, None)
