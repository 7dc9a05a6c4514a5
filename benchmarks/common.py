"""Shared pieces of the benchmark suite: the random backbone, the rows, memory and timing helpers.

Nothing here is imported by the ``mathverify`` package; TRL is only needed by the TRL contender
(``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Shapes of randomly initialised Llamas. "smollm2-135m" is SmolLM2-135M's published config.
SHAPES = {
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True,
                         rope_theta=100000.0, rms_norm_eps=1e-5),
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False,
                      rope_theta=500000.0, rms_norm_eps=1e-5),
    # CPU smoke test of the GPU script's code path: Llama-3's vocabulary, toy depth and width.
    "tiny-8b-vocab": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, vocab_size=128256, tie_word_embeddings=False,
                          rope_theta=500000.0, rms_norm_eps=1e-5),
}
TOKENIZER_ROWS = 3000
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def apply_mode_defaults(args, quick: dict, full: dict):
    """Fill the options left unset: ``quick`` values under --quick, then ``full`` values for the rest."""
    for name, value in (quick if args.quick else {}).items():
        setattr(args, name, getattr(args, name) or value)
    for name, value in full.items():
        setattr(args, name, getattr(args, name) or value)
    return args


def cache_dir() -> Path:
    path = Path(os.environ.get("MATHVERIFY_BENCH_CACHE", Path.home() / ".cache" / "mathverify-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_backbone(shape: str, layers: int | None = None, device: str = "cpu", dtype: str = "float32") -> Path:
    """Save a randomly initialised Llama of ``shape`` (optionally fewer layers) with a BPE tokenizer.

    The tokenizer is a byte-level BPE trained on synthetic rows (``mathverify.model.backbone``); on these
    rows its merges run out at ~830 tokens, so the *model's* vocabulary is padded to the shape's
    (49,152 for SmolLM2): the embedding and ``lm_head`` have the real size and cost, ids above the
    tokenizer's are simply never produced.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mathverify.data.prompt import SEED_TEMPLATE
    from mathverify.data.synthetic import generate_rows
    from mathverify.model.backbone import train_tiny_tokenizer

    spec = dict(SHAPES[shape])
    if layers:
        spec["num_hidden_layers"] = layers
    key = hashlib.sha1(json.dumps([shape, spec, dtype, 2], sort_keys=True).encode()).hexdigest()[:10]
    folder = cache_dir() / f"{shape}-L{spec['num_hidden_layers']}-{dtype}-{key}"
    if (folder / "config.json").is_file():
        return folder
    texts = [SEED_TEMPLATE.format(**r) + ("True" if r["is_correct"] else "False") + " True False"
             for r in generate_rows(TOKENIZER_ROWS, seed=12345)]
    tokenizer = train_tiny_tokenizer(texts, 49152)
    assert len(tokenizer) <= spec["vocab_size"]
    config = LlamaConfig(**spec, max_position_embeddings=8192, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    torch_dtype = getattr(torch, dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)  # initialise in the target dtype: no fp32 copy of an 8B model
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # the parent keeps running while the contenders' processes use the GPU
    os.replace(tmp, folder)
    return folder


def write_rows(n: int, seed: int, length_scale: float) -> Path:
    """Synthetic contest rows as JSONL; ``length_scale`` > 1 repeats each solution's text.

    Row i's solution is repeated k_i = max(1, round(length_scale * u_i)) times, u_i uniform in
    [0.5, 1.5] (seeded): mean length grows ~length_scale-fold and lengths spread like real data.
    """
    from mathverify.data.synthetic import generate_rows

    path = cache_dir() / f"rows-{n}-{seed}-{length_scale:g}.jsonl"
    if path.is_file():
        return path
    rng = random.Random(f"length:{seed}")
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w") as handle:
        for row in generate_rows(n, seed=seed):
            if length_scale != 1:
                k = max(1, round(length_scale * rng.uniform(0.5, 1.5)))
                row["solution"] = "\n".join([row["solution"]] * k)
            handle.write(json.dumps(row) + "\n")
    os.replace(tmp, path)
    return path


def read_rows(path: Path) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def seed_text(row: dict) -> str:
    """The seed recipe's training text: its prompt with the label word appended."""
    from mathverify.data.prompt import SEED_TEMPLATE

    return SEED_TEMPLATE.format(**row) + ("True" if row["is_correct"] in (True, "True", 1) else "False")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run_child(script: Path, args: list[str], timeout: float | None = None) -> dict:
    """Run ``python script args`` in a fresh process; its last stdout line is a JSON result."""
    cmd = [sys.executable, str(script), *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-6000:])
        raise RuntimeError(f"{script.name} {' '.join(args)} failed with exit code {proc.returncode}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    result = json.loads(lines[-1])
    result["process_wall_s"] = round(time.perf_counter() - start, 1)
    return result


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine() -> str:
    import platform

    import torch

    load = os.getloadavg()
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, load avg {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}")
