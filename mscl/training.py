"""The stage trainer: a ``transformers.Trainer`` that overrides the loss only.

Total objective of one batch (weights from ``params/<profile>/training.yaml``)::

    L = nll_weight * NLL(gold answer | x)  +  preference_weight * L_bias(Y_align, Y_conflict)

where NLL is the mean per-token negative log-likelihood of the gold answers and ``L_bias`` is
:func:`mscl.losses.preference_bias_loss` over the sampled responses, against reference
log-probabilities that were computed once, before training, with the model at the start of the
stage (so no second model runs during training). CIT is the same trainer with no responses.

Efficiency: sequences are left-padded, so every response ends at the last position; the model is
asked for logits of the last ``R + 1`` positions only (``logits_to_keep``), R being the longest
response in the batch. The vocabulary projection, the largest tensor of a small model, is thus
computed only where the loss reads it.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import Trainer, TrainingArguments

from mscl.losses import preference_bias_loss, sequence_logps
from mscl.models import format_prompt, response_suffix

IGNORE = -100


class ContextLengthError(ValueError):
    """A training sequence longer than ``max_length`` (names the record)."""


def encode_pair(tokenizer, question: str, response: str, max_length: int, record_id: str = "?") -> dict:
    """Token ids of prompt + response, with the prompt masked out of the labels.

    The prompt and the response are tokenized separately and concatenated, so the response's tokens
    are the same whatever the prompt was.
    """
    prompt_ids = tokenizer(format_prompt(tokenizer, question), add_special_tokens=False)["input_ids"]
    lead = "" if getattr(tokenizer, "chat_template", None) else " "
    response_ids = tokenizer(lead + response + response_suffix(tokenizer), add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None and getattr(tokenizer, "add_bos_token", False):
        prompt_ids = [tokenizer.bos_token_id] + prompt_ids
    ids = prompt_ids + response_ids
    if len(ids) > max_length:
        raise ContextLengthError(
            f"record {record_id}: prompt + response is {len(ids)} tokens, longer than max_length={max_length} "
            f"(question starts {question[:60]!r}); raise train.max_length or shorten the question"
        )
    return {"input_ids": ids, "labels": [IGNORE] * len(prompt_ids) + response_ids, "response_len": len(response_ids)}


def build_examples(tokenizer, records, max_length: int, preference_rows: Sequence[dict] | None = None) -> list[dict]:
    """One training example per record: its gold sequence plus, for PBL, its distinct sampled responses."""
    by_id = {row["id"]: row for row in preference_rows or []}
    examples = []
    for r in records:
        seqs = [dict(encode_pair(tokenizer, r.question, r.answer, max_length, r.id), kind="gold", aligned=True)]
        for resp in by_id.get(r.id, {}).get("responses", []):
            seqs.append(dict(encode_pair(tokenizer, r.question, resp["response"], max_length, r.id),
                             kind="response", aligned=bool(resp["aligned"]), ref_logp=resp.get("ref_logp")))
        examples.append({"id": r.id, "sequences": seqs})
    return examples


@dataclass
class SequenceCollator:
    """Flattens examples into one left-padded batch of sequences with their roles."""
    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict:
        seqs = [s for ex in examples for s in ex["sequences"]]
        return collate_sequences(seqs, self.pad_token_id)


def collate_sequences(seqs: list[dict], pad_token_id: int) -> dict:
    """Left-pad token sequences; position ids count real tokens only."""
    width = max(len(s["input_ids"]) for s in seqs)
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = len(s["input_ids"])
        ids[i, width - n :] = torch.tensor(s["input_ids"])
        labels[i, width - n :] = torch.tensor(s["labels"])
        mask[i, width - n :] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
        "labels": labels,
        "keep": torch.tensor(max(s["response_len"] for s in seqs) + 1),
        "is_gold": torch.tensor([s.get("kind", "gold") == "gold" for s in seqs]),
        "aligned": torch.tensor([bool(s.get("aligned", True)) for s in seqs]),
        "ref_logps": torch.tensor([float(s["ref_logp"]) if s.get("ref_logp") is not None else 0.0 for s in seqs]),
    }


def response_logps(model, batch: dict) -> torch.Tensor:
    """Summed log-probability of each sequence's response tokens (logits of the response span only)."""
    keep = int(batch["keep"])
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                position_ids=batch["position_ids"], logits_to_keep=keep)
    return sequence_logps(out.logits.float(), batch["labels"][:, -keep:])


@torch.no_grad()
def reference_logps(model, tokenizer, examples: list[dict], batch_size: int) -> None:
    """Fill ``ref_logp`` of every sampled response with the (frozen) model's log-probability, in place."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    seqs = [s for ex in examples for s in ex["sequences"] if s["kind"] == "response"]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]["input_ids"]))
    for start in range(0, len(order), batch_size):
        chunk = [seqs[i] for i in order[start : start + batch_size]]
        batch = {k: v.to(device) for k, v in collate_sequences(chunk, tokenizer.pad_token_id).items()}
        for s, lp in zip(chunk, response_logps(model, batch).tolist()):
            s["ref_logp"] = lp
    model.train(was_training)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the stage stops before a broken adapter is saved."""


class StageTrainer(Trainer):
    """``transformers.Trainer`` with the stage objective as its loss; nothing else overridden but logging."""

    def __init__(self, *args, bias_params=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.bias = bias_params
        self._metrics: dict[str, list[float]] = defaultdict(list)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        logps = response_logps(model, inputs)
        gold = inputs["is_gold"]
        tokens = (inputs["labels"][:, 1:] != IGNORE).sum(-1)
        nll = -logps[gold].sum() / tokens[gold].sum().clamp(min=1)
        loss = self.bias.nll_weight * nll if self.bias else nll
        self._metrics["nll"].append(nll.item())
        if self.bias is not None and (~gold).any():
            resp = ~gold
            pref = preference_bias_loss(
                logps[resp], inputs["ref_logps"][resp].to(logps.dtype), inputs["aligned"][resp],
                alpha=self.bias.alpha, beta=self.bias.beta, variant=self.bias.variant,
                scale=self.bias.scale, clamp=self.bias.clamp, reduction=self.bias.reduction,
            )
            loss = loss + self.bias.preference_weight * pref
            ratio = (logps[resp] - inputs["ref_logps"][resp]).detach()
            aligned = inputs["aligned"][resp]
            self._metrics["preference"].append(pref.item())
            if aligned.any():
                self._metrics["logratio_aligned"].append(ratio[aligned].mean().item())
            if (~aligned).any():
                self._metrics["logratio_conflict"].append(ratio[~aligned].mean().item())
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at step {self.state.global_step}; the stage stops and "
                "no adapter is saved (lower the learning rate, or use pbl.variant 'sigmoid' or pbl.clamp > 0)"
            )
        return loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        for key, values in self._metrics.items():
            if values:
                logs[key] = sum(values) / len(values)
        self._metrics.clear()
        super().log(logs, *args, **kwargs)


def training_arguments(train, output_dir, seed: int, n_examples: int) -> TrainingArguments:
    """The Trainer's arguments from ``params.train`` (a :class:`mscl.params.TrainParams`)."""
    steps_per_epoch = math.ceil(n_examples / (train.batch_size * train.grad_accum))
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        num_train_epochs=train.epochs,
        learning_rate=train.learning_rate,
        warmup_steps=int(train.warmup_ratio * steps_per_epoch * train.epochs),
        weight_decay=train.weight_decay,
        lr_scheduler_type="linear",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,
        dataloader_pin_memory=False,
        disable_tqdm=False,
    )


def train_lora(model, tokenizer, examples: list[dict], train, output_dir, seed: int, bias_params=None):
    """Train the (already LoRA-wrapped) ``model`` on ``examples``; returns the Trainer's log history."""
    trainer = StageTrainer(
        model=model,
        args=training_arguments(train, output_dir, seed, len(examples)),
        train_dataset=examples,
        data_collator=SequenceCollator(tokenizer.pad_token_id),
        bias_params=bias_params,
    )
    trainer.train()
    model.eval()
    return trainer.state.log_history
