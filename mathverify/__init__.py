"""mathverify: fine-tune a quantized Llama with LoRA to judge whether a math answer is correct."""

import logging as _logging

__version__ = "0.1.0"

# bitsandbytes warns at import, on CPUs with AVX512-BF16, that it cannot fetch an optional kernel
# from the hub. mathverify never uses that kernel (backbone.use_one_cpu_4bit_path), so the warning
# is noise in every command: drop that one message, nothing else from bitsandbytes.
_logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: "kernels-community" not in record.getMessage())


def __getattr__(name: str):
    # ``from mathverify import Verifier`` without importing torch for every ``import mathverify``
    if name == "Verifier":
        from mathverify.verifier import Verifier

        return Verifier
    raise AttributeError(f"module 'mathverify' has no attribute {name!r}")
