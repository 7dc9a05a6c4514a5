"""Loading the backbone: a Hugging Face causal LM (optionally bitsandbytes-quantized) with LoRA.

``backbone="tiny"`` selects a small randomly initialised Llama and a byte-level BPE tokenizer
trained offline on synthetic contest rows (``tiny_tokenizer.json`` beside this file;
``tests/test_tiny_tokenizer.py`` checks it equals one trained afresh on the generator's rows, and
rewrites it when run as a script); both are built once into a cache folder and then loaded
through exactly the same ``from_pretrained`` path as a real checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

TINY = "tiny"
TINY_TOKENIZER = Path(__file__).with_name("tiny_tokenizer.json")
LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Shape of the built-in tiny backbone. Changing it changes the cache key.
TINY_SPEC = {
    "version": 2,
    "vocab_size": 1024,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "tokenizer_rows": 3000,
    "seed": 0,
}
SPECIAL_TOKENS = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "pad_token": "<|pad|>"}


class BackboneError(ValueError):
    """A backbone that cannot be used as asked (missing folder, remote code, bad quantization)."""


def cache_root() -> Path:
    return Path(os.environ.get("MATHVERIFY_CACHE", Path.home() / ".cache" / "mathverify"))


def resolve_backbone(name: str) -> str:
    """Return a loadable name or folder: the tiny backbone's cache folder (built if missing)."""
    if name != TINY:
        return name
    # The tokenizer file is part of the key: a new generator (a new tokenizer) is a new backbone.
    key = hashlib.sha1(json.dumps([TINY_SPEC, TINY_TOKENIZER.read_text(encoding="utf-8")], sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_root() / f"tiny-llama-{key}"
    if not (folder / "config.json").is_file():
        build_tiny_backbone(folder)
    return str(folder)


def train_tiny_tokenizer(texts, vocab_size: int):
    """A byte-level BPE tokenizer (digits split one by one) wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def tiny_tokenizer():
    """The tiny backbone's tokenizer (``tiny_tokenizer.json``) as a transformers fast tokenizer."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(TINY_TOKENIZER.read_text(encoding="utf-8")),
                                   **SPECIAL_TOKENS)


def build_tiny_backbone(folder: Path) -> None:
    """Initialise a small Llama for the shipped tiny tokenizer, save both atomically."""
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = TINY_SPEC
    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"],
        max_position_embeddings=spec["max_position_embeddings"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):  # seeded here, without moving the caller's generator (a
        torch.manual_seed(spec["seed"])  # first run that builds it must train as later runs do)
        model = LlamaForCausalLM(config)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".tmp"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, folder)  # atomic; another process may have won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """Load a tokenizer; a missing pad token becomes EOS (padding positions are never scored)."""
    from transformers import AutoTokenizer

    path = resolve_backbone(name)
    _check_local(path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _check_local(path: str) -> None:
    """A path-like name (``./x``, ``/x``, ``~/x``, ``a/b/c``) must be an existing folder."""
    if Path(path).expanduser().is_dir():
        return
    if path.startswith((".", "/", "~")) or path.count("/") > 1:
        raise BackboneError(f"backbone folder {path} does not exist")


def quantization_config(quantization: str, compute_dtype: torch.dtype, quant_storage: torch.dtype | None):
    """transformers' BitsAndBytesConfig for ``4bit`` (nf4, double quant) or ``8bit``; None for ``none``."""
    if quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            bnb_4bit_quant_storage=quant_storage or torch.uint8,
        )
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise BackboneError(f"quantization must be none, 4bit or 8bit, got {quantization!r}")


def load_causal_lm(
    name: str,
    *,
    quantization: str,
    dtype: str,
    device: torch.device,
    trust_remote_code: bool = False,
    attn_implementation: str = "sdpa",
    quant_storage: str | None = None,
):
    """Load the causal LM onto ``device`` (the device Lightning's strategy chose for this rank).

    Weights go straight to that device with an explicit ``device_map={"": device}`` (quantized
    weights cannot be moved after loading; 16-bit ones would otherwise pass through host memory
    in every rank); never ``"auto"``, which under DDP silently shards one model over every GPU.
    """
    from transformers import AutoModelForCausalLM

    path = resolve_backbone(name)
    _check_local(path)
    torch_dtype = DTYPES[dtype]
    bnb = quantization_config(quantization, torch_dtype, DTYPES.get(quant_storage) if quant_storage else None)
    kwargs = dict(dtype=torch_dtype, trust_remote_code=trust_remote_code, attn_implementation=attn_implementation,
                  device_map={"": device})
    if bnb is not None:
        kwargs.update(quantization_config=bnb)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.config.use_cache = False  # training never reuses the KV cache
    if quantization == "4bit":
        use_one_cpu_4bit_path(model)
    if quantization == "8bit":
        from mathverify.model.int8 import use_frozen_int8_backward

        use_frozen_int8_backward(model)  # bitsandbytes' int8 matmul would keep every input past checkpointing
    return model


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """transformers' checkpointing of each decoder layer, non-reentrant: LoRA under DDP is never
    "marked ready twice". It acts only while the model is in training mode."""
    kwargs = {"use_reentrant": False}
    enable = getattr(model, "activation_checkpointing_enable", None)  # its newer name in transformers 5
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def use_one_cpu_4bit_path(model: torch.nn.Module) -> int:
    """Keep every bitsandbytes 4-bit layer on its dequantize + matmul path on CPUs with AVX512-BF16.

    On such CPUs bitsandbytes (0.48+) repacks a ``Linear4bit``'s weight in place the first time it
    runs in eval mode without grad (validation), and from then on computes it with a bf16 kernel:
    (a) results change by ~1e-3 in P(True) and depend on the batch shape, so a 2-rank validation no
    longer equals a 1-rank one; (b) the weight's storage becomes uint8 whatever ``quant_storage``
    said, which FSDP cannot flatten with bf16 weights; (c) training after that validation runs the
    packed kernel, which has no backward for its input: LoRA layers below it silently get no
    gradient through the frozen weights. One path on every CPU: the layer's flag is turned off.
    GPUs never take that path. Returns the number of layers changed.
    """
    changed = 0
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed
