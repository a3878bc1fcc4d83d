"""The stage trainer: a ``transformers.Trainer`` that overrides the loss only.

Total objective of one batch (weights from ``params/<profile>/training.yaml``)::

    L = nll_weight * NLL(gold answer | x)  +  preference_weight * L_bias(Y_align, Y_conflict)

where NLL is the mean per-token negative log-likelihood of the gold answers and ``L_bias`` is
:func:`mscl.core.losses.preference_bias_loss` over the sampled responses, against reference
log-probabilities computed once, before training, with the model at the start of the stage (so no
second model runs during training). CIT is the same trainer with no sampled responses.

Efficiency: every response to one question shares that question's prompt, so a training example is
*packed* into one row: the prompt once, then the gold answer and each sampled response after it. A
block-causal attention mask lets a response's tokens see the prompt and the earlier tokens of their
own response only, and their position ids continue from the prompt's end, so each response is
scored exactly as if it followed the prompt alone (``tests/test_training.py`` checks this against
unpacked scoring). With K sampled responses a PBL row costs one prompt plus K+1 short answers
instead of K+1 full sequences. Batches group examples of similar packed length
(:class:`LengthGroupedSampler`), so little of a batch is padding. Rows are left-padded so all
responses sit at the end, and the model is asked for the logits of that span only
(``logits_to_keep``): the vocabulary projection, the largest tensor of a small model, is computed
only where the loss reads it.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import Trainer, TrainingArguments

from mscl.common import dist
from mscl.engine.models import encode_prompt, frozen_dtype, response_suffix

IGNORE = -100


class ContextLengthError(ValueError):
    """A training sequence longer than ``max_length`` (names the record)."""


def encode_pair(tokenizer, question: str, response: str, max_length: int, record_id: str = "?",
                prompt_ids: list[int] | None = None) -> dict:
    """Token ids of prompt + response, with the prompt masked out of the labels.

    The prompt and the response are tokenized separately and concatenated, so the response's tokens
    are the same whatever the prompt was, and every response to one question shares its prompt ids
    (``prompt_ids``: the question's, already encoded by :func:`encode_prompt`).
    """
    prompt_ids = encode_prompt(tokenizer, question) if prompt_ids is None else prompt_ids
    lead = "" if getattr(tokenizer, "chat_template", None) else " "
    response_ids = tokenizer(lead + response + response_suffix(tokenizer), add_special_tokens=False)["input_ids"]
    ids = prompt_ids + response_ids
    if len(ids) > max_length:
        raise ContextLengthError(
            f"record {record_id}: prompt + response is {len(ids)} tokens, longer than max_length={max_length} "
            f"(question starts {question[:60]!r}); raise train.max_length or shorten the question"
        )
    return {"input_ids": ids, "labels": [IGNORE] * len(prompt_ids) + response_ids, "prompt_len": len(prompt_ids),
            "response_len": len(response_ids)}


def build_examples(tokenizer, records, max_length: int, preference_rows: Sequence[dict] | None = None) -> list[dict]:
    """One training example per record: its gold sequence plus, for PBL, its distinct sampled responses."""
    by_id = {row["id"]: row for row in preference_rows or []}
    examples = []
    for r in records:
        prompt = encode_prompt(tokenizer, r.question)   # once: every sequence of the record shares it
        seqs = [dict(encode_pair(tokenizer, r.question, r.answer, max_length, r.id, prompt), kind="gold",
                     aligned=True)]
        for resp in by_id.get(r.id, {}).get("responses", []):
            seqs.append(dict(encode_pair(tokenizer, r.question, resp["response"], max_length, r.id, prompt),
                             kind="response", aligned=bool(resp["aligned"]), ref_logp=resp.get("ref_logp"),
                             count=int(resp.get("count", 1))))
        examples.append({"id": r.id, "sequences": seqs})
    return examples


def _packed_row(example: dict, first_sequence: int) -> tuple[list, list, list, list, int]:
    """One example as a row: its prompt once, then each sequence's response. Returns the token ids,
    each token's segment (0: the prompt, k: the k-th sequence), its position id, one ``(column of the
    logits that predict it, token, sequence index)`` per response token (sequences counted from
    ``first_sequence``) and the prompt's length."""
    sequences = example["sequences"]
    p = sequences[0]["prompt_len"]
    prompt = sequences[0]["input_ids"][:p]
    ids, segment, position, targets = list(prompt), [0] * p, list(range(p)), []
    for k, sequence in enumerate(sequences, 1):
        if sequence["input_ids"][:p] != prompt:
            raise ValueError(f"example {example.get('id')}: its sequences do not share one prompt")
        response = sequence["input_ids"][p:]
        start = len(ids)
        # the first response token is predicted by the prompt's last position, shared by all responses
        targets += [((p - 1) if j == 0 else start + j - 1, tok, first_sequence + k - 1)
                    for j, tok in enumerate(response)]
        ids += response
        segment += [k] * len(response)
        position += range(p, p + len(response))
    return ids, segment, position, targets, p


def _left_padded(rows: list[tuple], pad_token_id: int) -> dict:
    """The rows left-padded to the widest: ``input_ids``, ``segments`` (-1 on pads), ``position_ids``,
    ``prompt_mask`` and the targets' coordinates shifted by each row's padding."""
    width = max(len(row[0]) for row in rows)
    n = len(rows)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    segments = torch.full((n, width), -1, dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    prompt_mask = torch.zeros((n, width), dtype=torch.long)
    target_row, target_col, target_token, target_sequence = [], [], [], []
    for b, (ids, segment, position, targets, p) in enumerate(rows):
        shift = width - len(ids)
        input_ids[b, shift:] = torch.tensor(ids)
        segments[b, shift:] = torch.tensor(segment)
        positions[b, shift:] = torch.tensor(position)
        prompt_mask[b, shift : shift + p] = 1
        for col, tok, seq in targets:
            target_row.append(b)
            target_col.append(col + shift)
            target_token.append(tok)
            target_sequence.append(seq)
    return {"input_ids": input_ids, "segments": segments, "position_ids": positions, "prompt_mask": prompt_mask,
            "target_row": torch.tensor(target_row), "target_col": torch.tensor(target_col),
            "target_token": torch.tensor(target_token), "target_sequence": torch.tensor(target_sequence)}


def _block_causal_mask(segments: torch.Tensor) -> torch.Tensor:
    """The 4D additive mask of packed rows: a token sees the earlier prompt tokens and the earlier
    tokens of its own segment, never another response's or a pad."""
    width = segments.shape[1]
    query, key = segments.unsqueeze(2), segments.unsqueeze(1)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    allowed = causal & (key >= 0) & ((key == 0) | (key == query))
    allowed |= torch.eye(width, dtype=torch.bool)  # a padding query sees itself: no fully masked row, no NaN
    mask = torch.zeros((segments.shape[0], 1, width, width))
    mask.masked_fill_(~allowed.unsqueeze(1), torch.finfo(mask.dtype).min)
    return mask


def _sequence_fields(sequences: list[dict], target_sequence: torch.Tensor) -> dict:
    """Per packed sequence: its response's token count, whether it is the gold answer, whether it
    is aligned, how many samples it stands for and its reference log-probability."""
    return {
        "n_tokens": torch.bincount(target_sequence, minlength=len(sequences)),
        "is_gold": torch.tensor([s.get("kind", "gold") == "gold" for s in sequences]),
        "aligned": torch.tensor([bool(s.get("aligned", True)) for s in sequences]),
        # how many identical samples a response stands for (merged by mscl.core.preference.split_responses)
        "counts": torch.tensor([float(s.get("count", 1)) for s in sequences]),
        "ref_logps": torch.tensor([float(s["ref_logp"]) if s.get("ref_logp") is not None else 0.0
                                   for s in sequences]),
    }


def pack_examples(examples: list[dict], pad_token_id: int) -> dict:
    """Pack each example into one left-padded row: its prompt once, then each of its sequences' responses.

    Returns the model inputs (``input_ids``, a 4D additive ``attention_mask``, ``position_ids``,
    ``prompt_mask``: the prompt's tokens, 2D) and, for scoring, one entry per response token
    (``target_row``, ``target_col``: the position whose logits predict it, ``target_token``,
    ``target_sequence``) plus per-sequence ``is_gold``, ``aligned``, ``ref_logps``, ``n_tokens``.
    """
    rows, sequences = [], []
    for example in examples:
        rows.append(_packed_row(example, len(sequences)))
        sequences += example["sequences"]
    padded = _left_padded(rows, pad_token_id)
    segments = padded.pop("segments")
    return {
        "input_ids": padded.pop("input_ids"),
        "attention_mask": _block_causal_mask(segments),
        **padded,
        **_sequence_fields(sequences, padded["target_sequence"]),
    }


def pack_sequences(seqs: list[dict], pad_token_id: int) -> dict:
    """Each sequence in a row of its own (no prompt sharing): plain causal scoring, one row a sequence."""
    return pack_examples([{"sequences": [s]} for s in seqs], pad_token_id)


def packed_length(example: dict) -> int:
    """Width of an example's packed row: its prompt once plus every sequence's response."""
    seqs = example["sequences"]
    return seqs[0]["prompt_len"] + sum(s["response_len"] for s in seqs)


class LengthGroupedSampler(torch.utils.data.Sampler):
    """Training order that puts examples of similar packed length in one batch (rows are padded to
    the longest, so a mixed batch pays for padding), and still varies from epoch to epoch.

    Each epoch, from ``(seed, epoch)``: sort by length jittered by up to +/-``jitter`` (so batch
    composition varies between epochs), cut into batches of ``batch_size`` (the global batch),
    shuffle the full batches, and put the one partial batch last (it must stay whole).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, jitter: float = 0.1):
        self.lengths = torch.tensor(list(lengths), dtype=torch.float64)
        self.batch_size, self.seed, self.jitter, self.epoch = batch_size, seed, jitter, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        noise = 1.0 + self.jitter * (2.0 * torch.rand(len(self.lengths), generator=g, dtype=torch.float64) - 1.0)
        order = torch.argsort(self.lengths * noise, stable=True).tolist()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        full = [b for b in batches if len(b) == self.batch_size]
        partial = [b for b in batches if len(b) < self.batch_size]
        for j in torch.randperm(len(full), generator=g).tolist():
            yield from full[j]
        for b in partial:
            yield from b


@dataclass
class PackedCollator:
    """The Trainer's data collator: :func:`pack_examples` with the tokenizer's pad id."""
    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict:
        return pack_examples(examples, self.pad_token_id)


def _unwrap(model):
    while hasattr(model, "module"):  # DDP / accelerate wrappers
        model = model.module
    return model


def response_logps(model, batch: dict) -> torch.Tensor:
    """Summed log-probability of each packed sequence's response tokens, one value per sequence.

    log p(y | x) = sum_t [ logit_t[y_t] - logsumexp(logit_t) ], computed only at the response
    positions (the logits of the trailing response span are all the model is asked for).
    """
    first = int(batch["target_col"].min())
    keep = batch["input_ids"].shape[1] - first
    extra = {"prompt_mask": batch["prompt_mask"]} if getattr(_unwrap(model), "uses_prompt_mask", False) else {}
    # the packed 4D mask is built in fp32; the attention takes it in the model's dtype
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"].to(frozen_dtype(model)),
                position_ids=batch["position_ids"], logits_to_keep=keep, **extra)
    logits = out.logits[batch["target_row"], batch["target_col"] - first].float()
    token_logps = logits.gather(-1, batch["target_token"].unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    n_sequences = batch["is_gold"].shape[0]
    return torch.zeros(n_sequences, dtype=token_logps.dtype, device=token_logps.device).index_add(
        0, batch["target_sequence"].to(token_logps.device), token_logps)


@torch.no_grad()
def reference_logps(model, tokenizer, examples: list[dict], batch_size: int) -> None:
    """Fill ``ref_logp`` of every sampled response with the (frozen) model's log-probability, in place."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: sum(len(s["input_ids"]) for s in examples[i]["sequences"]))
    for start in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[start : start + batch_size]]
        batch = {k: v.to(device) for k, v in pack_examples(chunk, tokenizer.pad_token_id).items()}
        seqs = [s for ex in chunk for s in ex["sequences"]]
        for s, lp in zip(seqs, response_logps(model, batch).tolist()):
            if s["kind"] == "response":
                s["ref_logp"] = lp
    model.train(was_training)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the stage stops before a broken adapter is saved."""


class StageTrainer(Trainer):
    """``transformers.Trainer`` with the stage objective as its loss; nothing else overridden but logging."""

    def __init__(self, *args, objective=None, **kwargs):
        super().__init__(*args, **kwargs)
        # the method's objective over the sampled responses (mscl.core.losses.PreferenceObjective);
        # None trains on the gold NLL alone
        self.bias = objective
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._tokens, self._since = 0, time.perf_counter()  # tokens through the model since the last log

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        # the global batch: under a launcher process p takes every W-th per-device chunk of it
        batch = self.args.per_device_train_batch_size * dist.world_size() * self.args.gradient_accumulation_steps
        return LengthGroupedSampler([packed_length(ex) for ex in dataset], batch, self.args.seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._tokens += inputs["input_ids"].numel()
        logps = response_logps(model, inputs)
        gold = inputs["is_gold"]
        # the mean over the gold tokens of the global batch: with N processes each one's share is
        # scaled by N because DDP averages the gradients (mscl.common.dist)
        tokens = dist.global_count(inputs["n_tokens"][gold].sum()).clamp(min=1)
        nll = -logps[gold].sum() / tokens * dist.world_size()
        pref = None  # the preference term of this batch's responses (PBL only)
        local_tokens = inputs["n_tokens"][gold].sum().clamp(min=1)
        self._metrics["nll"].append((-logps[gold].sum() / local_tokens).item())  # this process's batch
        resp = ~gold
        n_responses = inputs["counts"][resp].sum()
        if self.bias is not None and dist.world_size() > 1:
            # every process joins this reduction, with or without responses in its batch
            all_responses = dist.global_count(n_responses).clamp(min=1)
        if self.bias is not None and resp.any():
            aligned_term, conflict_term = self.bias.terms(logps[resp], inputs["ref_logps"][resp].to(logps.dtype),
                                                          inputs["aligned"][resp], weights=inputs["counts"][resp])
            pref = aligned_term + conflict_term
            self._metrics["preference"].append(pref.item())  # this process's batch
            self._log_grad_norms(model, {"nll": self.bias.nll_weight * nll,
                                         "aligned": self.bias.preference_weight * aligned_term,
                                         "conflict": self.bias.preference_weight * conflict_term})
            if dist.world_size() > 1:  # the global batch's sum or mean, as for the NLL above
                if self.bias.reduction == "mean":
                    pref = pref * n_responses / all_responses
                pref = pref * dist.world_size()
            ratio = (logps[resp] - inputs["ref_logps"][resp]).detach()
            aligned = inputs["aligned"][resp]
            if aligned.any():
                self._metrics["logratio_aligned"].append(ratio[aligned].mean().item())
            if (~aligned).any():
                self._metrics["logratio_conflict"].append(ratio[~aligned].mean().item())
        # CIT is the NLL alone; PBL's objective combines it with the preference term
        loss = nll if self.bias is None else self.bias.total(nll, pref)
        # every rank learns of a non-finite loss on any rank, so all stop together (none waits on NCCL)
        finite = bool(torch.isfinite(loss))
        if dist.any_rank(not finite):
            where = f"here ({loss.item()})" if not finite else "on another process"
            raise NonFiniteLossError(
                f"non-finite loss {where} at step {self.state.global_step}; the stage stops and no adapter is "
                "saved (lower the learning rate, or use pbl.variant 'sigmoid' or pbl.clamp > 0)"
            )
        return loss

    def _log_grad_norms(self, model, terms: dict[str, torch.Tensor]) -> None:
        """Every ``grad_norms_every`` optimizer steps, the L2 norm of each term's gradient over the
        trainable weights (``grad_norm_nll``, ``grad_norm_aligned`` (L_PP), ``grad_norm_conflict``
        (L_NP)): what pulls the model, and how hard. Logging only: the gradients are taken aside
        (``torch.autograd.grad``), the step's own backward is untouched."""
        every = self.bias.grad_norms_every
        if not every or not model.training or self.state.global_step % every:
            return
        weights = [w for w in model.parameters() if w.requires_grad]
        for name, term in terms.items():
            if not term.requires_grad:
                continue
            grads = torch.autograd.grad(term, weights, retain_graph=True, allow_unused=True)
            squares = sum(float(g.float().pow(2).sum()) for g in grads if g is not None)
            self._metrics[f"grad_norm_{name}"].append(squares ** 0.5)

    def log(self, logs: dict, *args, **kwargs) -> None:
        for key, values in self._metrics.items():
            if values:
                logs[key] = sum(values) / len(values)
        self._metrics.clear()
        now = time.perf_counter()
        if self._tokens:  # this process's tokens (padding included) per second since the last log
            logs["tokens_per_s"] = self._tokens / max(now - self._since, 1e-9)
        self._tokens, self._since = 0, now
        super().log(logs, *args, **kwargs)


def training_arguments(train, output_dir, seed: int, n_examples: int) -> TrainingArguments:
    """The Trainer's arguments from ``params.train`` (a :class:`mscl.common.params.TrainParams`)."""
    steps_per_epoch = math.ceil(n_examples / (train.batch_size * train.grad_accum))
    return TrainingArguments(
        output_dir=str(output_dir),
        # under a launcher the global batch stays train.batch_size (mscl.common.dist)
        per_device_train_batch_size=dist.per_device_batch_size(train.batch_size),
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
        # on a machine without a GPU: under a launcher the processes then train together over gloo
        use_cpu=not torch.cuda.is_available(),
    )


def tensorboard_callback(log_dir):
    """transformers' own TensorBoard callback, writing event files to ``log_dir``."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return TensorBoardCallback(SummaryWriter(log_dir=str(log_dir)))


def train_lora(model, tokenizer, examples: list[dict], train, output_dir, seed: int, objective=None,
               tensorboard_dir=None, callbacks=()):
    """Train the (already LoRA-wrapped) ``model`` on ``examples``; returns the Trainer's log history.
    ``objective`` is the method's loss over sampled responses (:class:`mscl.core.losses.PreferenceObjective`),
    None for the gold NLL alone. ``tensorboard_dir``: where the logged values (each loss term, the
    learning rate, gradient norms, tokens/s) also go as TensorBoard event files; ``callbacks``: the
    method's own ``TrainerCallback``s. A vLLM engine left from the stage's sampling is shut down
    first, so training has the GPU."""
    from mscl.engine import vllm_backend

    vllm_backend.shutdown()
    trainer = StageTrainer(
        model=model,
        args=training_arguments(train, output_dir, seed, len(examples)),
        train_dataset=examples,
        data_collator=PackedCollator(tokenizer.pad_token_id),
        objective=objective,
        callbacks=[*callbacks, *([tensorboard_callback(tensorboard_dir)]
                                 if tensorboard_dir is not None and dist.is_main() else [])],
    )
    trainer.train()
    model.eval()
    return trainer.state.log_history
