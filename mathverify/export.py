"""Export a checkpoint as a PEFT adapter folder (and optionally a merged full model).

The folder loads with plain ``peft.PeftModel.from_pretrained(base, folder)``; ``mathverify.json``
holds what a plain-transformers user needs to score rows exactly as ``mathverify predict`` does:
the prompt template, the cue and label token ids, and the decision threshold.

    mathverify export --ckpt_path lightning_logs/demo/version_0/checkpoints/last.ckpt --output demo-adapter
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from mathverify.atomic import atomic_folder


def load_module_from_checkpoint(ckpt_path: str, device="cpu"):
    """Rebuild the VerifierModule from a checkpoint's hyper-parameters and load its weights onto
    ``device``. Returns (module, the checkpoint's dict); raises ``CheckpointError``."""
    import torch

    from mathverify.cli import CheckpointError, _load_checkpoint
    from mathverify.model.module import VerifierModule

    state = _load_checkpoint(ckpt_path)
    if "hyper_parameters" not in state or "state_dict" not in state:
        raise CheckpointError(f"{ckpt_path}: not a mathverify checkpoint (no hyper_parameters/state_dict)")
    hparams = {k: v for k, v in state["hyper_parameters"].items() if not k.startswith("_")}
    try:
        module = VerifierModule(**hparams)
    except TypeError as err:  # another LightningModule's checkpoint, or another version's settings
        raise CheckpointError(f"{ckpt_path}: not a checkpoint of this mathverify version ({err})") from None
    module.build(torch.device(device))
    # checks the adapter shape, restores the tuned thresholds (not the training RNG: nothing trains)
    module.on_load_checkpoint({k: v for k, v in state.items() if k != "rng"})
    module.load_state_dict(state["state_dict"], strict=False)
    return module.eval(), state


def _json_settings(hparams) -> dict:
    """The module's settings that rebuild it for inference (``Verifier.load``); not the optimizer."""
    out = {}
    for key, value in dict(hparams).items():
        if key.startswith("_") or key == "optimizer":
            continue
        try:
            json.dumps(value)
        except TypeError:
            value = list(value) if isinstance(value, (tuple, set)) else str(value)
        out[key] = value
    return out


def export_checkpoint(ckpt_path: str, output: str, merged: bool = False, overwrite: bool = False) -> Path:
    """Write ``output/`` (adapter, tokenizer, head, mathverify.json[, merged/]) atomically."""
    from mathverify.data.prompt import PromptEncoder
    from mathverify.model.backbone import load_tokenizer, resolve_backbone

    target = Path(output)
    if target.exists() and not overwrite:
        raise SystemExit(f"mathverify export: {target} exists; pass --overwrite to replace it")
    from mathverify.cli import CheckpointError
    from mathverify.errors import SettingsError

    try:
        module, state = load_module_from_checkpoint(ckpt_path)
    except (CheckpointError, SettingsError) as err:
        raise SystemExit(f"mathverify export: {err}") from None
    hp = module.hparams
    tokenizer = load_tokenizer(hp.backbone, hp.trust_remote_code)
    encoder = PromptEncoder(tokenizer, hp.prompt_template, hp.positive_label, hp.negative_label, hp.max_length)
    with atomic_folder(target) as tmp:  # mathverify.atomic: the folder appears complete or not at all
        module.model.save_pretrained(tmp)  # adapter_config.json + adapter_model.safetensors
        tokenizer.save_pretrained(tmp)
        if hp.head == "classifier":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in module.head.state_dict().items()}, tmp / "classifier_head.safetensors")
        index_json = state.get("VerifyDataModule", {}).get("evidence_index")
        evidence = _write_evidence(tmp, module, index_json) if hp.get("evidence") else None
        meta = {
            "evidence": evidence,
            "base_model": resolve_backbone(hp.backbone), "head": hp.head, "threshold": float(module.threshold),
            "threshold_seen": float(module.threshold_seen),
            "combination": {"weights": module.combination.as_list(), "rows": ["unseen", "seen"],
                            "columns": ["text margin", "evidence shift", "bias"]},
            "module": _json_settings(hp),  # mathverify.Verifier.load rebuilds the module from these
            "prompt_template": hp.prompt_template, "max_length": hp.max_length,
            "label_words": {"positive": hp.positive_label, "negative": hp.negative_label},
            "label_token_ids": {"positive": encoder.labels.positive_id, "negative": encoder.labels.negative_id},
            "cue_token_ids": list(encoder.labels.cue_ids), "bos_token_id": tokenizer.bos_token_id,
            "input_ids": "[bos] + tokens(template before {solution}) + tokens(solution) + cue_token_ids; "
                         "longer than max_length: cut the middle of the solution tokens",
            "p_true": "sigmoid(a m + b d + c): m = logits[last, positive] - logits[last, negative], d the "
                      "evidence shift (0 without evidence), (a, b, c) the combination row of the row's case "
                      "(seen where its question has labelled rows in the evidence index); predicted True when "
                      "p_true > threshold (threshold_seen in the seen case)",
        }
        (tmp / "mathverify.json").write_text(json.dumps(meta, indent=2))
        if merged:
            _write_merged(tmp, meta["base_model"], hp)
    return target


def _write_evidence(folder: Path, module, index_json: str | None) -> dict:
    """The evidence head's weights and the prediction index (gzipped JSON), with how to use them.

    The index written is the complete one (``EvidenceIndex.complete``: every labelled training row,
    validation questions' rows included), as ``predict`` uses it."""
    from safetensors.torch import save_file

    from mathverify.evidence.index import FEATURES, EvidenceIndex, save_json

    if index_json is None:
        raise SystemExit("mathverify export: the checkpoint weighs evidence but holds no evidence index")
    index = EvidenceIndex.from_json(index_json)
    save_json(index_json if not index.left_out else index.complete().to_json(), folder / "evidence_index.json.gz")
    save_file({k: v.contiguous() for k, v in module.evidence_head.state_dict().items()},
              folder / "evidence_head.safetensors")
    return {"index": "evidence_index.json.gz", "head": "evidence_head.safetensors", "features": list(FEATURES),
            "logits": "d = min(net(features), net(features with the lowering ones at 0)) "
                      "(mathverify.model.heads.EvidenceHead, evidence.index.LOWERING), combined with the text margin "
                      "m per case: see 'combination'; features: mathverify.evidence.index.features, leave-one-out, index + the scored file's own answers"}


def _write_merged(folder: Path, base_name: str, hp) -> None:
    """Merge LoRA into a 16/32-bit reload of the base (never into 4-bit weights) and save it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if hp.dtype == "float32" else torch.bfloat16
    base = AutoModelForCausalLM.from_pretrained(base_name, dtype=dtype, trust_remote_code=hp.trust_remote_code)
    merged = PeftModel.from_pretrained(base, folder).merge_and_unload()
    merged.save_pretrained(folder / "merged")
    shutil.copy(folder / "mathverify.json", folder / "merged" / "mathverify.json")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            shutil.copy(folder / name, folder / "merged" / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mathverify export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="checkpoint file, or RUN:best / RUN:last")
    parser.add_argument("--output", required=True, help="folder to write")
    parser.add_argument("--logs_dir", default="lightning_logs", help="root of the run folders (short forms)")
    parser.add_argument("--merged", action="store_true", help="also write merged/ (a full model with LoRA merged in)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    from mathverify.cli import CheckpointError, resolve_ckpt_path

    try:
        ckpt = resolve_ckpt_path(args.ckpt_path, args.logs_dir, "mathverify", "export")
    except CheckpointError as err:
        raise SystemExit(f"mathverify export: error: {err}") from None
    folder = export_checkpoint(ckpt, args.output, merged=args.merged, overwrite=args.overwrite)
    print(f"mathverify export: wrote {folder} from {ckpt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
