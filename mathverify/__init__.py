"""mathverify: fine-tune a quantized Llama with LoRA to judge whether a math answer is correct."""

__version__ = "0.1.0"
