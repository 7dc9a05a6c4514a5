"""What the other solutions of a question say: answer keys, answer equality (math-verify), the
evidence index and its features, best-of-N selection."""


def __getattr__(attr: str):
    # ``mathverify.evidence.EvidenceIndex`` (a class path in configs) without importing torch for every submodule
    if attr == "EvidenceIndex":
        from mathverify.evidence.index import EvidenceIndex

        return EvidenceIndex
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
