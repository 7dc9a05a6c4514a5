"""Rows in, batches out: sources and their reading order, the validation split, the training
stream, prompts and tokenized examples, the start-up state, and the ``VerifyDataModule``."""


def __getattr__(attr: str):
    # ``mathverify.data.VerifyDataModule`` (a class path in configs) without importing torch for every submodule
    if attr == "VerifyDataModule":
        from mathverify.data.datamodule import VerifyDataModule

        return VerifyDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
