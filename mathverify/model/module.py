"""The LightningModule: a (quantized) causal LM with LoRA adapters, judged by a two-logit head."""

from __future__ import annotations

from typing import Literal, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import nn

from mathverify.data.prompt import SEED_TEMPLATE, PromptEncoder
from mathverify.data.sharding import EpochRows
from mathverify.errors import SettingsError
from mathverify.evidence.index import LOWERING, N_FEATURES, has_labelled_siblings
from mathverify.model import rng
from mathverify.model.backbone import LLAMA_PROJECTIONS, enable_gradient_checkpointing, load_causal_lm, load_tokenizer
from mathverify.model.combination import Combination, as_logits
from mathverify.model.compile import compile_decoder_layers
from mathverify.model.flops import decoder_flops_per_token
from mathverify.model.heads import ClassifierHead, EvidenceHead, LabelTokenHead
from mathverify.model.packing import packed_last_hidden_states
from mathverify.model.param_groups import parameter_groups
from mathverify.model.prefix import computed_tokens, last_hidden_states, shared_prefix_length
from mathverify.model.schedule import warmup_then_decay
from mathverify.model.settings import check_adapter_keys, check_evidence_width, check_settings
from mathverify.model.swiglu import use_lean_mlp


EVAL_VIEWS = {"val": ("val", "val_seen"), "test": ("test",)}  # metric prefix of each row view
EPOCH_KEYS = ("margin", "shift", "labels", "view", "row_index", "row_loss", "labelled")  # per-row validation/test outputs


def default_optimizer(params):
    return torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01)


class VerifierModule(pl.LightningModule):
    """Fine-tunes a causal LM with LoRA to predict whether a math answer is correct.

    Args:
        backbone: Hugging Face hub name, local model folder, or ``tiny`` (built-in small Llama).
        quantization: ``none``, ``4bit`` (nf4 + double quant) or ``8bit`` (LLM.int8) via bitsandbytes.
        dtype: dtype of the unquantized weights and of 4-bit compute (``float32`` on CPU).
        quant_storage: storage dtype of 4-bit weights (set it to ``dtype`` for FSDP); default uint8.
        head: ``label_tokens`` scores the label words with lm_head rows; ``classifier`` adds a linear head.
        prompt_template: prompt with {question}, {answer}, {solution}, ending with the label cue.
        positive_label: label word for a correct answer (scored right after the cue).
        negative_label: label word for a wrong answer.
        max_length: most prompt tokens; longer prompts lose the middle of their solution.
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator (alpha / r, or alpha / sqrt(r) with rsLoRA).
        lora_dropout: dropout on the LoRA input.
        use_rslora: rank-stabilised LoRA scaling.
        lora_bias: ``none``, ``all`` or ``lora_only`` (peft's ``bias``).
        target_modules: module names that get LoRA adapters (default: all seven Llama projections).
        modules_to_save: extra modules trained in full and saved with the adapter (e.g. ``embed_tokens``).
        class_weights: cross-entropy weights for (wrong, correct); None for unweighted.
        threshold: decision threshold on P(correct) for validate/test/predict; rows whose question has
            labelled siblings (the seen case) use their own, tuned on the ``val_seen`` view.
        gradient_checkpointing: recompute activations in backward (non-reentrant, DDP-safe).
        optimizer: optimizer factory over the trainable parameters (default AdamW, lr 2e-4, wd 0.01);
            its weight decay applies to matrices only, never to biases, norms or embeddings.
        warmup_fraction: share of ``trainer.max_steps`` spent warming the learning rate up linearly.
        schedule: learning-rate decay after warm-up: ``cosine``, ``linear`` or ``constant``.
        trust_remote_code: let transformers run code shipped with a hub model (off unless asked).
        attn_implementation: transformers attention kernel (``sdpa``, ``eager``, ``flash_attention_2``).
        shared_prefix_min_tokens: when every row of a batch starts with at least this many identical
            tokens (the prompt's instruction text: ~86 tokens with the seed template), run them once
            for the batch and let each row attend to their keys/values (``mathverify.model.prefix``): same
            result, ~20 % fewer tokens through the decoder on contest rows. 0 turns it off.
        packing: run a micro-batch's rows as one sequence, attention kept inside each row, no pad
            computed (``mathverify.model.packing``; pays off with ``flex_attention`` or flash-attention).
        evidence: weigh what the other rows of the question say (answer agreement, known labels;
            ``mathverify.evidence.index``) with the text: an ``EvidenceHead`` shifts the logits. The one
            switch: linked to ``data.evidence``, stored in checkpoints, used by every command.
        use_text: read the text with the language model (False with ``evidence``: an
            evidence-only model, for ablations; the backbone is then never run).
        evidence_lr: learning rate of the evidence head (its own optimizer group, no weight decay);
            ``EvidenceWarmStart`` has already fitted it, so the steps only adjust it (1e-2 moved a
            near-0.5 group across 0.5 on real math unseen, 0.804 against 0.834 at 1e-3).
        compile_layers: ``torch.compile`` each decoder layer (``mathverify.model.compile``): fused
            element-wise kernels on a GPU, for a compile at the first step.
    """

    def __init__(
        self,
        backbone: str = "tiny",
        quantization: Literal["none", "4bit", "8bit"] = "none",
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        quant_storage: Optional[Literal["uint8", "float32", "bfloat16", "float16"]] = None,
        head: Literal["label_tokens", "classifier"] = "label_tokens",
        prompt_template: str = SEED_TEMPLATE,
        positive_label: str = "True",
        negative_label: str = "False",
        max_length: int = 1024,
        lora_r: int = 16,
        lora_alpha: float = 32.0,
        lora_dropout: float = 0.0,
        use_rslora: bool = False,
        lora_bias: Literal["none", "all", "lora_only"] = "none",
        target_modules: list[str] = list(LLAMA_PROJECTIONS),
        modules_to_save: list[str] = [],
        class_weights: Optional[tuple[float, float]] = None,
        threshold: float = 0.5,
        gradient_checkpointing: bool = False,
        optimizer: Optional[OptimizerCallable] = None,
        warmup_fraction: float = 0.1,
        schedule: Literal["cosine", "linear", "constant"] = "cosine",
        trust_remote_code: bool = False,
        attn_implementation: str = "sdpa",
        shared_prefix_min_tokens: int = 16,
        packing: bool = False,
        evidence: bool = False,
        use_text: bool = True,
        evidence_lr: float = 1e-3,
        compile_layers: bool = False,
    ) -> None:
        super().__init__()
        if not use_text and not evidence:
            raise SettingsError("use_text false needs evidence true: the model would read nothing")
        check_settings(lora_r, lora_alpha, lora_dropout, max_length, threshold, warmup_fraction, class_weights,
                        shared_prefix_min_tokens)
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimizer_factory = optimizer or default_optimizer
        self.threshold = threshold  # rows without labelled siblings (unseen questions)
        self.threshold_seen = threshold  # rows with labelled siblings (evidence on); tuned on val_seen
        self.model: Optional[nn.Module] = None  # built in configure_model, so --help stays fast
        self.head: Optional[nn.Module] = None
        self.evidence_head: Optional[nn.Module] = None  # with evidence=True (configure_model)
        self.combination = Combination()  # text margin + evidence shift per case (fitted on validation rows)
        self._flops_per_token: Optional[int] = None
        self._last_train_batch: Optional[tuple] = None
        self.strict_loading = False  # checkpoints hold only the trainable weights
        # val/test losses are means over every rank's rows (epoch_outputs), each view its own;
        # Lightning's sync_dist mean would truncate the row count of uneven ranks.
        self.epoch_rows = EpochRows()  # this epoch's validation/test rows (see epoch_outputs)

    # ----- building -------------------------------------------------------------------------
    def configure_model(self) -> None:
        self.build(self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu"))

    def build(self, device: torch.device) -> None:
        """Load the backbone onto ``device``, add LoRA and the heads (once; Lightning calls it
        through ``configure_model``, ``mathverify.verifier`` directly)."""
        if self.model is not None:
            return
        hp = self.hparams
        tokenizer = load_tokenizer(hp.backbone, hp.trust_remote_code)
        encoder = PromptEncoder(tokenizer, hp.prompt_template, hp.positive_label, hp.negative_label, hp.max_length)
        base = load_causal_lm(
            hp.backbone,
            quantization=hp.quantization,
            dtype=hp.dtype,
            device=device,
            trust_remote_code=hp.trust_remote_code,
            attn_implementation=hp.attn_implementation,
            quant_storage=hp.quant_storage,
        )
        if hp.gradient_checkpointing:
            enable_gradient_checkpointing(base)
        self.model = self._with_lora(base)
        self._flops_per_token = decoder_flops_per_token(self.model.get_base_model().get_decoder())
        use_lean_mlp(self.model)  # one [B, T, intermediate] activation fewer per layer (mathverify.model.swiglu)
        if hp.compile_layers:
            compile_decoder_layers(self.model)
        labels = encoder.labels
        if hp.head == "label_tokens":
            self.head = LabelTokenHead(labels.negative_id, labels.positive_id)
        else:
            self.head = ClassifierHead(base.config.hidden_size)
        self.head.to(device)
        if hp.evidence:
            self.evidence_head = EvidenceHead(N_FEATURES, lowering=LOWERING).to(device)
        # from_pretrained leaves it in eval mode and Lightning never calls .train(): transformers then
        # never checkpoints (docs/memory.md). It follows this module's mode, as in HF Trainer and TRL.
        self.model.train(self.training)

    def _with_lora(self, base: nn.Module) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        hp = self.hparams
        config = LoraConfig(
            r=hp.lora_r, lora_alpha=hp.lora_alpha, lora_dropout=hp.lora_dropout, use_rslora=hp.use_rslora,
            bias=hp.lora_bias, target_modules=list(hp.target_modules),
            modules_to_save=list(hp.modules_to_save) or None, task_type="CAUSAL_LM",
        )
        return get_peft_model(base, config)

    # ----- forward and steps ----------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor, shared_prefix: Optional[int] = None,
                evidence: Optional[torch.Tensor] = None) -> torch.Tensor:
        """input_ids [B, T] right-padded, lengths [B], evidence [B, F] -> logits [B, 2] (wrong, correct).

        The one P(True) path of test, predict, the submission and the Python API: softmax of these
        logits, i.e. sigmoid(a m + b d + c) with the row's case's ``combination`` weights.
        """
        margin, shift = self.margins(input_ids, lengths, shared_prefix, evidence)
        labelled = has_labelled_siblings(evidence) if evidence is not None else torch.zeros_like(margin, dtype=torch.bool)
        return as_logits(self.combination(margin, shift, labelled))

    def margins(self, input_ids: torch.Tensor, lengths: torch.Tensor, shared_prefix: Optional[int] = None,
                evidence: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The two log-odds of each row: text margin m [B] (logit True - logit False of the label
        head; 0 without text) and evidence shift d [B] (0 without evidence). Training uses m + d.

        No attention mask: with right padding no real token attends to a pad (see ``mathverify.model.prefix``).
        """
        if self.hparams.use_text:
            causal_lm = self.model.get_base_model()
            decoder = causal_lm.get_decoder()
            if self.hparams.packing:
                last = packed_last_hidden_states(decoder, input_ids, lengths)  # [B, H]
            else:
                min_shared = self.hparams.shared_prefix_min_tokens
                last = last_hidden_states(decoder, input_ids, lengths, min_shared, shared_prefix)  # [B, H]
            logits = self.head(last, causal_lm.get_output_embeddings())  # [B, 2]
            margin = logits[:, 1] - logits[:, 0]
        else:
            margin = torch.zeros(input_ids.shape[0], device=input_ids.device)
        if self.evidence_head is None:
            return margin, torch.zeros_like(margin)
        if evidence is None:
            raise SettingsError("this model weighs evidence (model.evidence true) but the batch has none")
        return margin, self.evidence_head(evidence.to(margin.device))

    def _logits(self, batch: dict) -> torch.Tensor:
        return self(batch["input_ids"], batch["lengths"], batch.get("shared_prefix"), batch.get("evidence"))

    @staticmethod
    def labelled_rows(batch: dict) -> torch.Tensor:
        """bool [B]: rows whose question has labelled siblings (False for all without evidence)."""
        evidence = batch.get("evidence")
        if evidence is None:
            return torch.zeros(batch["input_ids"].shape[0], dtype=torch.bool)
        return has_labelled_siblings(evidence)

    def decision_thresholds(self, labelled: torch.Tensor) -> torch.Tensor:
        """Each row's threshold [B]: ``threshold_seen`` where it has labelled siblings, else ``threshold``."""
        return torch.where(labelled.cpu().bool(), torch.tensor(float(self.threshold_seen)),
                           torch.tensor(float(self.threshold)))

    def _step(self, batch: dict, stage: str) -> dict:
        margin, shift = self.margins(batch["input_ids"], batch["lengths"], batch.get("shared_prefix"), batch.get("evidence"))
        labelled = self.labelled_rows(batch).to(margin.device)
        # Train and validate on m + d (what training optimises; the validation loss picks checkpoints);
        # test scores as predict does, with the fitted combination.
        z = self.combination(margin, shift, labelled) if stage == "test" else margin + shift  # [B]
        logits = as_logits(z)
        labels = batch["labels"]
        weight = None
        if self.hparams.class_weights is not None:
            weight = torch.tensor(self.hparams.class_weights, dtype=logits.dtype, device=logits.device)
        batch_size = labels.shape[0]
        view = batch.get("view")
        if stage == "train":
            loss = nn.functional.cross_entropy(logits, labels, weight=weight)
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=batch_size)
            return {"loss": loss, "probs": logits.detach().softmax(-1)[:, 1], "labels": labels}
        # Validation/test: per-row losses, logged per view at epoch end from every rank's rows.
        rows = nn.functional.cross_entropy(logits, labels, weight=weight, reduction="none")
        view = torch.zeros_like(labels) if view is None else view.to(labels.device)
        out = {"loss": rows.mean(), "probs": logits.detach().softmax(-1)[:, 1], "labels": labels,
               "margin": margin.detach().float(), "shift": shift.detach().float(),
               "view": view, "row_index": batch["row_index"].to(labels.device), "row_loss": rows.detach(),
               "labelled": labelled.long().to(labels.device)}  # long: gathered across ranks
        self.epoch_rows.add(**{k: out[k] for k in EPOCH_KEYS})
        return out

    def training_step(self, batch: dict, batch_idx: int) -> dict:
        self._last_train_batch = (batch["lengths"], batch.get("shared_prefix"), batch["input_ids"])
        return self._step(batch, "train")

    @property
    def flops_per_batch(self) -> Optional[int]:
        """Model FLOPs of the last training micro-batch, for Lightning's ``ThroughputMonitor``.

        Per computed token: 4 x frozen + 6 x trainable matrix parameters of the decoder (a frozen
        weight needs no weight gradient); attention's T^2 term and gradient-checkpointing recompute
        are not counted. The monitor turns it into ``device/flops_per_sec`` (and ``device/mfu`` on
        GPUs whose peak it knows).
        """
        if self._last_train_batch is None or self._flops_per_token is None:
            return None
        lengths, shared, input_ids = self._last_train_batch
        if shared is None:
            shared = shared_prefix_length(input_ids, lengths)
        decoder = self.model.get_base_model().get_decoder()
        min_shared = 0 if self.hparams.packing else self.hparams.shared_prefix_min_tokens  # packed: real tokens only
        return self._flops_per_token * computed_tokens(lengths, shared, min_shared, decoder)

    def on_validation_epoch_start(self) -> None:
        self.epoch_rows.reset()

    def on_test_epoch_start(self) -> None:
        self.epoch_rows.reset()

    def epoch_outputs(self) -> dict:
        """Every rank's rows of this validation/test epoch: probs, labels, view, row_index, margin,
        shift, labelled [N] (CPU).

        Gathered across ranks once and shared by the callbacks that need all rows (metrics,
        threshold, best-of-N); every rank must call it (a collective), and gets the same rows.
        ``probs`` are P(True) as predict gives them, with the current ``combination`` weights (a
        ``FitCombination`` listed before the other callbacks refits them first).
        """
        rows = self.epoch_rows.gathered(self)
        z = self.combination(rows["margin"], rows["shift"], rows["labelled"].bool())
        return {**rows, "probs": torch.sigmoid(z)}

    def on_validation_epoch_end(self) -> None:
        self._log_view_losses("val")

    def on_test_epoch_end(self) -> None:
        self._log_view_losses("test")

    def _log_view_losses(self, stage: str) -> None:
        if self.trainer.sanity_checking:
            return
        rows = self.epoch_outputs()
        for index, name in enumerate(EVAL_VIEWS[stage]):
            mine = rows["view"] == index
            if bool(mine.any()):  # the same on every rank: the rows are gathered
                self.log(f"{name}/loss", rows["row_loss"][mine].mean(), on_step=False, on_epoch=True,
                         sync_dist=False, prog_bar=name in ("val", "test"))

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        return self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        return self._step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        logits = self._logits(batch)
        return {"probs": logits.softmax(-1)[:, 1], "row_index": batch["row_index"], "ids": batch["ids"],
                "labelled": self.labelled_rows(batch)}

    # ----- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self):
        groups = parameter_groups(self, leave_out=self.evidence_head)
        if self.evidence_head is not None:  # a few hundred weights that must move far in a few hundred
            # steps: their own rate (``own_lr``: a round's lr change leaves it alone), no decay
            groups.append({"params": list(self.evidence_head.parameters()), "lr": self.hparams.evidence_lr,
                           "weight_decay": 0.0, "name": "evidence", "own_lr": True})
        optimizer = self.optimizer_factory(groups)
        # trainer.max_steps, not estimated_stepping_batches: reading the latter makes Lightning
        # skip restoring the dataloader state on resume (Lightning issue 20550).
        total = self.trainer.max_steps
        if total is None or total <= 0:
            raise SettingsError("set trainer.max_steps (the stream is endless; steps bound the run)")
        factor = warmup_then_decay(total, int(self.hparams.warmup_fraction * total), self.hparams.schedule)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """``trainer.gradient_clip_val`` under FSDP too: Lightning refuses norm clipping there (a
        plain clip_grad_norm_ would see only this rank's shard); the root FSDP unit's own
        ``clip_grad_norm_`` takes the norm over all shards."""
        from torch.distributed.fsdp import FullyShardedDataParallel

        wrapped = self.trainer.strategy.model
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm") and isinstance(wrapped, FullyShardedDataParallel):
            wrapped.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ----- checkpoints: trainable weights only ----------------------------------------------
    def trainable_names(self) -> set[str]:
        """State-dict keys of the trainable weights (FSDP/activation-checkpoint wrapper names removed)."""
        wrappers = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")
        names = set()
        for name, param in self.named_parameters():
            if param.requires_grad:
                for wrapper in wrappers:
                    name = name.replace(wrapper, "")
                names.add(name)
        return names

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The frozen base (16 GB for Llama-3-8B) is reloaded from its source; keep only what trains.
        # Filter what Lightning already gathered (under FSDP a second state_dict() would gather again).
        names = self.trainable_names()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in names}
        checkpoint["decision_threshold"] = float(self.threshold)  # tuned on validation, used by predict
        checkpoint["decision_threshold_seen"] = float(self.threshold_seen)
        checkpoint["combination"] = self.combination.as_list()  # fitted on validation, used by test/predict
        checkpoint["rng"] = rng.capture(self.device)  # every rank's generators (dropout), for exact resumes

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        check_evidence_width(checkpoint["state_dict"])
        self.threshold = float(checkpoint.get("decision_threshold", self.threshold))
        self.threshold_seen = float(checkpoint.get("decision_threshold_seen", self.threshold))
        if "combination" in checkpoint:  # older checkpoints: the identity (m + d), as they were trained
            self.combination.load_list(checkpoint["combination"])
        if "rng" in checkpoint:
            rank = self.trainer.global_rank if self._trainer is not None else 0
            rng.restore(checkpoint["rng"], rank, self.device)
        if self.model is not None:
            check_adapter_keys(self.trainable_names(), set(checkpoint["state_dict"]))
