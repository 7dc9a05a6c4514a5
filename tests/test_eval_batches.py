"""Evaluation batches sized to the device (``mathverify.data.eval_batches``).

``eval_batch_size: auto`` keeps 16 rows on a CPU and on a GPU cuts the longest-first rows into
batches whose no-grad forward fits a share of the free memory. What a CPU can check: the memory
count per row is at or above the peak a real forward reaches (Llama-3-8B width, LoRA on), batches
never exceed the budget and cover every row once (also split over ranks), and budgeted batches give
the same P(True) as fixed ones, through the Verifier and through ``mathverify predict``.
"""

from __future__ import annotations

import random
import weakref
from types import SimpleNamespace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from mathverify.data import eval_batches
from mathverify.data.eval_batches import AUTO, CPU_ROWS, BatchPlan, EvalBatches, checked_setting, forward_bytes, plan_for
from mathverify.errors import SettingsError


class PeakLiveBytes(TorchDispatchMode):
    """The most bytes of tensors created inside the block that were alive at once."""

    def __init__(self, existing) -> None:
        super().__init__()
        self._existing = {t.untyped_storage().data_ptr() for t in existing}
        self._refs: dict[int, weakref.ref] = {}
        self.live = self.peak = 0

    def _freed(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            address = storage.data_ptr()
            known = self._refs.get(address)
            if not address or address in self._existing or (known is not None and known() is not None):
                continue
            nbytes = storage.nbytes()
            self._refs[address] = weakref.ref(storage, lambda _ref, n=nbytes: self._freed(n))
            self.live += nbytes
        self.peak = max(self.peak, self.live)
        return out


@pytest.fixture(scope="module")
def wide_lora_llama():
    """Two layers of Llama-3-8B's shape (small vocabulary, random weights) with LoRA on every projection."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=900, hidden_size=4096, intermediate_size=14336, num_hidden_layers=2,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=1024)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return get_peft_model(model, LoraConfig(r=16, target_modules=targets))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_forward_bytes_is_at_or_above_the_measured_peak_of_a_no_grad_forward(wide_lora_llama, attn):
    model = wide_lora_llama
    model.config._attn_implementation = attn
    decoder = model.get_base_model().get_decoder()
    rows, length = 2, 96
    ids = torch.randint(10, 800, (rows, length))
    with torch.inference_mode():
        peak = PeakLiveBytes(list(model.parameters()) + list(model.buffers()) + [ids])
        with peak:
            decoder(input_ids=ids).last_hidden_state
    counted = rows * forward_bytes(model.config, 4, attn, length)
    report = f"{attn}: counted {counted / 2**20:.1f} MiB, measured peak {peak.peak / 2**20:.1f} MiB"
    print(report)
    assert peak.peak <= counted <= 1.25 * peak.peak, report


def test_plan_for_settings_devices_and_models(tiny_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    cpu = torch.device("cpu")
    assert plan_for(7, model, cpu) == BatchPlan(7)
    assert plan_for(AUTO, model, cpu) == BatchPlan(CPU_ROWS)  # a CPU: fixed rows
    assert plan_for(AUTO, None, cpu, free_bytes=10**9) == BatchPlan(CPU_ROWS)  # shape unknown
    plan = plan_for(AUTO, model, cpu, free_bytes=10**9)
    assert plan.budget_bytes == int(eval_batches.MEMORY_SHARE * 10**9) and plan.max_rows == eval_batches.MAX_ROWS
    assert plan.row_bytes(100) == forward_bytes(model.config, 4, model.config._attn_implementation, 100)
    for good in (1, 64, AUTO):
        assert checked_setting(good) == good
    for bad in (0, -3, "big", True, 2.5):
        with pytest.raises(SettingsError, match="eval_batch_size must be a whole number >= 1 or 'auto'"):
            checked_setting(bad)


def test_budgeted_batches_fit_the_budget_cover_every_row_once_and_are_full():
    rng = random.Random(0)
    lengths = sorted((rng.randint(20, 1024) for _ in range(500)), reverse=True)
    per_token = 1000
    plan = BatchPlan(64, budget_bytes=15_000_000, row_bytes=lambda n: n * per_token)
    bounds = plan.cut(lengths)
    assert [a for a, _ in bounds] == [0] + [b for _, b in bounds[:-1]] and bounds[-1][1] == len(lengths)
    for start, end in bounds:
        padded = (end - start) * lengths[start] * per_token  # every row padded to the batch's first (longest)
        assert padded <= plan.budget_bytes or end - start == 1
        if end < len(lengths):  # one more row would not fit, or the row cap is reached
            assert (end - start + 1) * lengths[start] * per_token > plan.budget_bytes or end - start == 64
    sizes = [end - start for start, end in bounds]
    assert sizes[0] * 3 < max(sizes) <= 64  # long rows share a batch with few others, short ones fill the cap
    assert BatchPlan(16).cut(lengths) == [(i, min(i + 16, 500)) for i in range(0, 500, 16)]
    huge = BatchPlan(64, budget_bytes=10, row_bytes=lambda n: n * per_token)
    assert all(end - start == 1 for start, end in huge.cut(lengths[:5]))  # one row at least, never none


def test_the_data_module_splits_rows_over_ranks_before_cutting(tiny_path, write_csv, monkeypatch):
    from mathverify.data.datamodule import VerifyDataModule
    from mathverify.data.synthetic import generate_rows

    rows = [{"question": r["question"], "answer": r["answer"], "solution": r["solution"] * (1 + i % 5)}
            for i, r in enumerate(generate_rows(60, seed=3))]
    seen = []
    for rank in (0, 1):
        dm = VerifyDataModule(predict_files=write_csv(rows), backbone=tiny_path, eval_batch_size=AUTO)
        dm.setup("predict")
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2, lightning_module=None,
                                     strategy=SimpleNamespace(root_device=torch.device("cpu")))
        plan = BatchPlan(32, budget_bytes=20_000, row_bytes=lambda n: n * 10)
        monkeypatch.setattr("mathverify.data.datamodule.plan_for", lambda *a, **k: plan)
        batches = list(dm.predict_dataloader())
        for batch in batches:
            assert batch["input_ids"].numel() * 10 <= 20_000 or len(batch["lengths"]) == 1
            assert batch["lengths"].tolist() == sorted(batch["lengths"].tolist(), reverse=True)
        seen += [i for b in batches for i in b["row_index"].tolist()]
        assert len(set(b["input_ids"].shape[0] for b in batches)) > 1  # sized by length, not a fixed count
    assert sorted(seen) == list(range(60))  # every row once over the two ranks


def test_budgeted_batches_score_as_fixed_ones_in_the_verifier(evidence_run, monkeypatch):
    from mathverify.data.synthetic import generate_rows
    from mathverify.verifier import Verifier

    _, ckpt = evidence_run
    rows = [{"question": r["question"], "answer": r["answer"], "solution": r["solution"] * (1 + i % 4)}
            for i, r in enumerate(generate_rows(40, seed=11))]
    fixed = Verifier.load(ckpt, device="cpu", batch_size=16).score(rows)
    shapes = []
    real_cut = BatchPlan.cut

    def recording_cut(self, lengths):
        bounds = real_cut(self, lengths)
        shapes.extend(end - start for start, end in bounds)
        return bounds

    monkeypatch.setattr(BatchPlan, "cut", recording_cut)
    verifier = Verifier.load(ckpt, device="cpu")  # auto
    model = verifier.module.model
    small = forward_bytes(model.config, 4, "sdpa", 200) * 8 / eval_batches.MEMORY_SHARE  # ~8 rows of 200 tokens
    monkeypatch.setattr("mathverify.verifier.plan_for",
                        lambda setting, m, device: plan_for(setting, m, device, free_bytes=int(small)))
    budgeted = verifier.score(rows)
    assert len(set(shapes)) > 1 and max(shapes) < 40, shapes  # batches of several sizes
    assert torch.allclose(torch.tensor(budgeted), torch.tensor(fixed), atol=1e-5, rtol=0)


def test_memory_advice_under_auto_names_a_fixed_batch():
    from mathverify.memory_advice import MemorySettings, advice

    s = MemorySettings(stage="predict", gradient_checkpointing=True, quantization="4bit", dtype="bfloat16",
                       max_length=1024, micro_batch=2, accumulate=12, eval_batch_size=AUTO)
    text = advice(s)
    assert "batches sized to the free memory" in text and "--data.eval_batch_size 16" in text


def test_eval_batches_dataset_yields_collated_batches_in_order(tiny_path):
    examples = [{"input_ids": list(range(10, 10 + n)), "label": 1, "row_index": i}
                for i, n in enumerate([9, 7, 7, 3, 2])]
    data = EvalBatches(examples, BatchPlan(2), pad_id=0)
    batches = list(data)
    assert len(data) == 3 and [b["row_index"].tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert batches[1]["input_ids"].tolist()[1] == [10, 11, 12, 0, 0, 0, 0]
