"""The model: the quantized backbone, its decoder pass (shared prefix, SwiGLU), the heads, the
optimizer's parameter groups, per-rank RNG state, and the ``VerifierModule``."""


def __getattr__(attr: str):
    # ``mathverify.model.VerifierModule`` (a class path in configs) without importing torch for every submodule
    if attr == "VerifierModule":
        from mathverify.model.module import VerifierModule

        return VerifierModule
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
