"""``model.compile_layers``: each decoder layer runs through torch.compile, and a compiled fit trains
the same adapter as an eager one (CPU Inductor, float32), over batches of three different lengths
(one graph with dynamic shapes serves them all)."""

from __future__ import annotations

import torch


def _fit(backbone: str, compile_layers: bool, batches: list[dict]) -> tuple[dict, object]:
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader

    from mathverify.model.module import VerifierModule

    torch.manual_seed(0)
    module = VerifierModule(backbone=backbone, lora_r=8, compile_layers=compile_layers,
                            optimizer=lambda p: torch.optim.SGD(p, lr=0.5))  # big steps: a missed gradient shows
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=len(batches), logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    lora = {k: v.detach().clone() for k, v in module.model.named_parameters() if "lora_" in k}
    return lora, module


def test_a_compiled_fit_trains_the_adapter_an_eager_fit_trains(tiny_path):
    import torch._dynamo

    generator = torch.Generator().manual_seed(1)
    batches = []
    for rows, tokens in ((3, 40), (3, 57), (2, 71)):  # three lengths, one dynamic-shape graph
        ids = torch.randint(10, 800, (rows, tokens), generator=generator)
        batches.append({"input_ids": ids, "lengths": torch.full((rows,), tokens), "labels": torch.arange(rows) % 2,
                        "shared_prefix": 0})
    eager, _ = _fit(tiny_path, False, batches)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled, module = _fit(tiny_path, True, batches)
    layers = module.model.get_base_model().get_decoder().layers
    assert all(layer._compiled_call_impl is not None for layer in layers)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # a graph really ran compiled
    assert set(compiled) == set(eager) and len(eager) > 0
    start = dict(_fit_start(tiny_path))
    moved = max((eager[k] - start[k]).abs().max().item() for k in eager)
    differ = max((compiled[k] - eager[k]).abs().max().item() for k in eager)
    print(f"adapter moved by up to {moved:.3g}; compiled vs eager differ by up to {differ:.3g}")
    assert moved > 1e-3, moved  # training moved the adapter ...
    assert differ < 1e-4 * max(1.0, moved), (differ, moved)  # ... and compiled moved it the same way
    # parameter names are unchanged: checkpoints and exported adapters load either way
    assert not any("_orig_mod" in k for k in module.state_dict())


def _fit_start(backbone: str):
    from mathverify.model.module import VerifierModule

    torch.manual_seed(0)
    module = VerifierModule(backbone=backbone, lora_r=8)
    module.build(torch.device("cpu"))
    return {k: v.detach().clone() for k, v in module.model.named_parameters() if "lora_" in k}.items()
