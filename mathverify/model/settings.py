"""One-line errors for impossible ``VerifierModule`` settings, before any weight is loaded."""

from __future__ import annotations

from mathverify.errors import SettingsError


def check_settings(r, alpha, dropout, max_length, threshold, warmup, class_weights, min_shared) -> None:
    """One-line errors for impossible values, before any weight is loaded."""
    problems = []
    if r < 1:
        problems.append(f"lora_r must be >= 1, got {r}")
    if alpha <= 0:
        problems.append(f"lora_alpha must be > 0, got {alpha}")
    if not 0 <= dropout < 1:
        problems.append(f"lora_dropout must be in [0, 1), got {dropout}")
    if max_length < 64:
        problems.append(f"max_length must be >= 64, got {max_length}")
    if not 0 < threshold < 1:
        problems.append(f"threshold must be in (0, 1), got {threshold}")
    if not 0 <= warmup < 1:
        problems.append(f"warmup_fraction must be in [0, 1), got {warmup}")
    if class_weights is not None and (len(class_weights) != 2 or min(class_weights) <= 0):
        problems.append(f"class_weights must be two positive numbers, got {class_weights}")
    if min_shared < 0:
        problems.append(f"shared_prefix_min_tokens must be >= 0 (0 = off), got {min_shared}")
    if problems:
        raise SettingsError("; ".join(problems))


def check_adapter_keys(expected: set[str], got: set[str]) -> None:
    """A checkpoint's trainable weights must be exactly this model's (one line naming a few that differ)."""
    if got != expected:
        missing, unexpected = sorted(expected - got)[:3], sorted(got - expected)[:3]
        raise SettingsError("checkpoint does not match this model's adapter (another backbone or LoRA shape?): "
                            f"missing {missing}, unexpected {unexpected}")


EVIDENCE_INPUT = "evidence_head.net.0.weight"  # [hidden, number of evidence features]


def check_evidence_width(state_dict: dict) -> None:
    """A checkpoint's evidence head must read as many features as this version computes
    (``evidence.index.FEATURES``): an older one (18 features, before the solution checks) is refused
    in one line rather than failing deep inside ``load_state_dict``."""
    from mathverify.evidence.index import N_FEATURES

    weight = state_dict.get(EVIDENCE_INPUT)
    if weight is not None and weight.shape[-1] != N_FEATURES:
        raise SettingsError(f"checkpoint's evidence head reads {weight.shape[-1]} features, this mathverify computes "
                            f"{N_FEATURES} (the solution checks were added): run fit again with this version")
