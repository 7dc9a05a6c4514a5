"""The tiny backbone's shipped tokenizer (mathverify/model/tiny_tokenizer.json) is the one trained on
the synthetic generator's rows, so the model layer needs no import of the data layer to build it.

After a change to the generator or the prompt, rewrite the file with ``python tests/test_tiny_tokenizer.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mathverify.data.prompt import SEED_TEMPLATE  # noqa: E402
from mathverify.data.synthetic import generate_rows  # noqa: E402
from mathverify.model.backbone import TINY_SPEC, TINY_TOKENIZER, tiny_tokenizer, train_tiny_tokenizer  # noqa: E402


def trained_afresh() -> str:
    texts = [SEED_TEMPLATE.format(**row) + (" True" if row["is_correct"] else " False") + "True False"
             for row in generate_rows(TINY_SPEC["tokenizer_rows"], seed=12345)]
    return train_tiny_tokenizer(texts, TINY_SPEC["vocab_size"]).backend_tokenizer.to_str()


def test_the_shipped_tiny_tokenizer_is_the_one_the_generator_trains():
    assert TINY_TOKENIZER.read_text(encoding="utf-8") == trained_afresh(), (
        "mathverify/model/tiny_tokenizer.json is stale: python tests/test_tiny_tokenizer.py rewrites it")


def test_the_loaded_tokenizer_splits_digits_and_knows_the_labels():
    tokenizer = tiny_tokenizer()
    assert 256 < len(tokenizer) <= TINY_SPEC["vocab_size"]  # the byte alphabet and the merges it found
    assert tokenizer.tokenize("1234") == ["1", "2", "3", "4"]
    assert len(tokenizer(" True", add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.eos_token == "<|end_of_text|>"


if __name__ == "__main__":
    TINY_TOKENIZER.write_text(trained_afresh(), encoding="utf-8")
    print(f"wrote {TINY_TOKENIZER}")
