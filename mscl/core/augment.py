"""Self-distillation data augmentation: the model rewrites its own training questions (the paper's second part).

For a training pair (x, y) the model at the start of the stage writes new questions x' and
(x', y) becomes a training pair too, with the original answer. Three strategies, each a chat prompt
with three worked demonstrations (a 135M model follows demonstrations far better than instructions):

- **BKI**, background knowledge integration: the model writes one sentence of background knowledge
  about the question's topic, and x' = that sentence + " " + x. The model supplies the knowledge,
  the code does the splicing: asking a small model to rewrite the whole question with background
  mostly gets the question answered or lost, while the spliced form is a question with the same
  answer by construction.
- **LCE**, logic-compatible expansion: the model rewrites x adding a logically related detail that
  does not change its answer (more semantic complexity).
- **PA**, paraphrase augmentation: the model rewords x with other words and another structure.

Each strategy samples ``augment.count`` outputs per question (``augment.temperature``,
``augment.top_p``, ``augment.max_new_tokens``), batched through :func:`mscl.engine.generation.generate` and
seeded per strategy and round. An output becomes a candidate x' after light cleaning (labels such
as "Rewritten question:" and wrapping quotes removed; a rewrite is cut after its first "?", which
drops an answer the model appends; a background is cut after its first sentence). Degenerate
candidates are dropped, each with the first reason that applies (``DEGENERATE_REASONS``):

==============  =================================================================================
``empty``        nothing left after cleaning
``prompt_echo``  repeats the instruction or a demonstration instead of rewriting
``not_question`` LCE/PA: the output has no "?" (the model answered or made a statement)
``no_sentence``  BKI: the output has no complete sentence to use as background
``copy``         equals the question it rewrites or the original question (lower-cased word tokens)
``answer_leak``  contains the gold answer, or an earlier answer of the fact that a revision
                 replaced, as whole words, case ignored, where the question it rewrites did not
                 (training on it would teach copying, or bring the replaced answer back)
``too_long``     longer than ``augment.max_length_ratio`` times the original question (characters)
``duplicate``    the same x' (word tokens) as an earlier kept-so-far rewrite of the same question
==============  =================================================================================

Who rewrites (``augment.rewriter_scale``). In the paper the model at the stage's start rewrites
its own inputs (scale 1.0, the ``gpu`` profile). A 135M model fine-tuned on short answers stops
following the rewrite prompts: at stage 2 of the ``cpu`` profile, SmolLM2-135M with its stage-1
adapter merged answers the questions instead (0 of 108 rewrites usable at scale 1.0, 1 at 0.5),
while with a tenth of its fine-tuning delta since the backbone 68 of 108 are usable, as many as
the backbone alone gives (69) (``notebooks/03b_augmentation.ipynb``, table
``reports/tables/03b_rewriter_scale.md``, counted by :func:`rewriter_scale_counts`). So the rewrites
are generated with ``W0 + scale * (W - W0)`` (``W0``: the backbone before stage 1, ``W``: the model
at the stage's start), the same model with its fine-tuning damped, not another model; the LLM
indication check, which asks what the model knows, always uses the model at the stage's start (``W``).

Rounds (``augment.rounds``): round 1 rewrites the stage's training questions; round r > 1 rewrites
the x' that round r - 1 *selected* (:mod:`mscl.core.selection`), each with the strategy that produced it,
so every strategy grows its own chain and the count grows linearly with the rounds rather than
multiplying by the number of strategies. Every round is selected the same way, and the x' selected
in all rounds are the augmented training pairs. The per-strategy, per-round counts (generated,
dropped by reason, not selected by reason, kept) are the ``summary``.

An augmented pair is an :class:`AugmentedRecord`: every field of a benchmark record (copied from the
original record, so ``fact_id``, ``answer`` and ``previous_answer`` are the original's) with the new
``id`` and ``question``, plus ``strategy``, ``round``, ``source_id`` (the question it rewrites:
the original's id in round 1, a selected x' later) and ``origin_id`` (the original training record).
"""
from __future__ import annotations

import dataclasses
import re
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from mscl.common.timing import timed
from mscl.core.selection import (
    SELECTION_MODES,
    SELECTION_REASONS,
    llm_indication,
    mutual_information,
    select_candidates,
    word_tokens,
)
from mscl.engine.generation import generate
from mscl.engine.models import interpolated_weights

STRATEGIES = ("bki", "lce", "pa")
DEGENERATE_REASONS = ("empty", "prompt_echo", "not_question", "no_sentence", "copy", "answer_leak", "too_long",
                      "duplicate")
# the benchmark record's fields (mscl.benchmark.Record), copied from the original record
RECORD_FIELDS = ("id", "fact_id", "stream", "stage", "domain", "split", "question", "answer", "previous_answer",
                 "edited", "shared_with", "source")


# --------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class StrategyPrompt:
    """How one strategy asks the model: a system line, a user instruction with ``{question}``, and
    demonstrations (question, ideal output) shown as earlier chat turns."""
    system: str
    instruction: str
    demos: tuple[tuple[str, str], ...]
    splice: bool        # the output is background put in front of the question (BKI), not a new question
    label: str          # how an output is introduced in the plain (no chat template) format


# Tuned on SmolLM2-135M-Instruct (20 cpu-profile training questions, one sample each): a short
# instruction ("Paraphrase: ...") with three demonstrations gave 17 (BKI), 16 (LCE) and 15 (PA)
# non-degenerate outputs of 20; a long instruction ("Reword this question with other words and
# another sentence structure: ...") with two demonstrations gave 7 for PA, the model mostly
# answering the question instead. Demonstrations are generic facts outside the benchmark.
_DEMO_QUESTIONS = ("What is the capital of Australia?", "How many legs does a spider have?",
                   "Which language is spoken in Brazil?")
PROMPTS: dict[str, StrategyPrompt] = {
    "bki": StrategyPrompt(
        system="You give background knowledge. Reply with one sentence of background about the topic of the "
               "question. Never answer it.",
        instruction="Background for: {question}",
        demos=((_DEMO_QUESTIONS[0], "Australia is a country in the Southern Hemisphere made up of six states and "
                                    "two territories."),
               (_DEMO_QUESTIONS[1], "Spiders are arachnids, a group of animals distinct from insects."),
               (_DEMO_QUESTIONS[2], "Brazil is the largest country in South America.")),
        splice=True, label="Background:"),
    "lce": StrategyPrompt(
        system="You expand questions. Reply with one new question that adds a logically related detail but still "
               "has the same answer. Never answer it.",
        instruction="Expand: {question}",
        demos=((_DEMO_QUESTIONS[0], "Which city, the seat of the Australian federal government, is the capital "
                                    "of Australia?"),
               (_DEMO_QUESTIONS[1], "Counting all of its jointed limbs, how many legs does a spider have?"),
               (_DEMO_QUESTIONS[2], "Which language, brought by colonists from Europe, is spoken in Brazil?")),
        splice=False, label="Expanded:"),
    "pa": StrategyPrompt(
        system="You paraphrase questions. Reply with one new question that asks the same thing in different "
               "words. Never answer it.",
        instruction="Paraphrase: {question}",
        demos=((_DEMO_QUESTIONS[0], "Which Australian city is the country's capital?"),
               (_DEMO_QUESTIONS[1], "What is the number of legs on a spider?"),
               (_DEMO_QUESTIONS[2], "In Brazil, people speak which language?")),
        splice=False, label="Paraphrased:"),
}


def rewrite_prompt(tokenizer, strategy: str, question: str) -> str:
    """The prompt that asks the model for one ``strategy`` output about ``question``.

    With a chat template: system line, the demonstrations as user/assistant turns, then the
    instruction for ``question`` and the generation prompt. Without one, the same as plain text
    (``instruction`` / ``label output`` blocks), ending with the label for the model to complete.
    """
    p = _prompt(strategy)
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": p.system}]
        for demo_q, demo_out in p.demos:
            messages += [{"role": "user", "content": p.instruction.format(question=demo_q)},
                         {"role": "assistant", "content": demo_out}]
        messages.append({"role": "user", "content": p.instruction.format(question=question)})
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    blocks = [f"{p.instruction.format(question=q)}\n{p.label} {out}" for q, out in p.demos]
    return f"{p.system}\n\n" + "\n\n".join(blocks) + f"\n\n{p.instruction.format(question=question)}\n{p.label}"


def _prompt(strategy: str) -> StrategyPrompt:
    if strategy not in PROMPTS:
        raise ValueError(f"unknown augmentation strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    return PROMPTS[strategy]


# --------------------------------------------------------------------------- records and candidates
@dataclass(frozen=True)
class AugmentedRecord:
    """An augmented training pair (x', y): a benchmark record's fields plus where it came from."""
    id: str
    fact_id: str
    stream: str | None
    stage: int | None
    domain: str | None
    split: str | None
    question: str
    answer: str
    previous_answer: str | None
    edited: bool | None
    shared_with: str | None
    source: str | None
    strategy: str
    round: int
    source_id: str
    origin_id: str


@dataclass
class Candidate:
    """One model output for one question, and what became of it (degenerate, selected or not)."""
    strategy: str
    round: int
    index: int                 # which of the ``count`` samples
    source: Any                # the record whose question was rewritten
    origin: Any                # the original training record (== source in round 1)
    raw: str                   # the model's output as generated
    question: str = ""         # the cleaned x'
    reason: str | None = None  # why it is degenerate (DEGENERATE_REASONS), None if usable
    mi: float | None = None    # MI(x'; x) with the original question
    indication: bool | None = None
    rewrite_answer: str | None = None
    original_answer: str | None = None
    selection: str | None = None   # why a usable candidate was not selected (SELECTION_REASONS)
    kept: bool = False

    @property
    def id(self) -> str:
        return f"{self.source.id}~{self.strategy}{self.round}.{self.index}"

    def record(self) -> AugmentedRecord:
        """The augmented training pair; fields of the original record, the new question."""
        fields = {name: getattr(self.origin, name, None) for name in RECORD_FIELDS}
        fields.update(id=self.id, question=self.question)
        return AugmentedRecord(**fields, strategy=self.strategy, round=self.round, source_id=self.source.id,
                               origin_id=self.origin.id)

    def row(self) -> dict:
        """Everything about the candidate as one JSON-able row (``augment_candidates.jsonl``)."""
        return {"id": self.id, "strategy": self.strategy, "round": self.round, "source_id": self.source.id,
                "origin_id": self.origin.id, "origin_question": self.origin.question,
                "source_question": self.source.question, "answer": self.origin.answer, "raw": self.raw,
                "question": self.question, "reason": self.reason, "mi": self.mi, "indication": self.indication,
                "rewrite_answer": self.rewrite_answer, "original_answer": self.original_answer,
                "selection": self.selection, "kept": self.kept}


def augmented_record_from_row(row: dict) -> AugmentedRecord:
    """An :class:`AugmentedRecord` back from its JSONL row (``dataclasses.asdict`` form)."""
    return AugmentedRecord(**row)


# --------------------------------------------------------------------------- cleaning and filtering
_LABEL = re.compile(r"^\s*(?:rewritten question|reworded question|paraphrased question|expanded question|"
                    r"new question|rewrite|reworded|paraphrased?|expanded|question|background|answer)\s*:\s*",
                    re.IGNORECASE)
_QUOTES = "\"'“”‘’`"
# a sentence ends at . or ! followed by a capitalised word or the end ("U.S. state" is not cut)
_SENTENCE = re.compile(r"^(.+?[.!])(?=\s+[A-Z0-9\"“(]|\s*$)")
# instruction words that a rewrite only contains when the model talks about the task instead of doing it
_ECHO_PHRASES = ("this question", "the question", "rewrite", "reword", "paraphrase", "rephrase")
# the demonstrations' topics: a rewrite about spiders' legs of a question about currencies copies a
# demonstration ("A spider can have how many legs?"), unless the question itself is about them
_DEMO_TOPICS = ("australia", "spider", "arachnid", "brazil")


def _words(text: str) -> str:
    """Lower-cased word tokens joined by single spaces, padded, for whole-word containment tests."""
    return " " + " ".join(word_tokens(text)) + " "


def _echo_markers(strategy: str) -> list[str]:
    p = _prompt(strategy)
    markers = [p.instruction.split("{question}")[0]] + [text for demo in p.demos for text in demo]
    return [_words(m) for m in markers if word_tokens(m)] + [_words(m) for m in _ECHO_PHRASES]


def _mentions_demo(text: str, question: str) -> bool:
    topical = [w for w in word_tokens(text) if w.startswith(_DEMO_TOPICS)]
    return bool(topical) and not any(w.startswith(_DEMO_TOPICS) for w in word_tokens(question))


def clean_output(raw: str, strategy: str, question: str = "") -> tuple[str, str | None]:
    """The usable part of one model output for ``question``: (text, None), or ("", reason).

    Labels ("Rewritten question:", "Background:", ...) and wrapping quotes are removed and the first
    non-empty line is kept; a rewrite (LCE, PA) is cut after its first "?", a background (BKI) after
    its first sentence. ``prompt_echo``: the text contains the instruction, a demonstration, a
    phrase about the task ("this question", "rewrite") or a demonstration's topic that
    ``question`` does not mention.
    """
    p = _prompt(strategy)
    lines = [line.strip() for line in raw.strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    previous = None
    while text != previous:  # labels and quotes can nest: 'Rewrite: "Question: ..."'
        previous = text
        text = _LABEL.sub("", text).strip().strip(_QUOTES).strip()
    if not word_tokens(text):
        return "", "empty"
    generated = _words(text)
    if any(m in generated for m in _echo_markers(strategy)) or _mentions_demo(text, question):
        return "", "prompt_echo"
    if p.splice:
        sentence = _SENTENCE.match(text)
        return (sentence.group(1).strip(), None) if sentence else ("", "no_sentence")
    if "?" not in text:
        return "", "not_question"
    return text[: text.index("?") + 1].strip(), None


def degenerate_reason(question: str, source_question: str, origin_question: str, answer: str,
                      max_length_ratio: float, earlier: Sequence[str] = ()) -> str | None:
    """Why the candidate x' ``question`` is unusable (``copy``, ``answer_leak``, ``too_long``), or None.

    ``source_question``: the question it rewrites; ``origin_question``: the original training
    question; ``earlier``: the fact's earlier answers, replaced by revisions (a leak too).
    """
    new = _words(question)
    if new in (_words(source_question), _words(origin_question)):
        return "copy"
    for leaked in (answer, *earlier):
        words = _words(leaked)
        if words.strip() and words in new and words not in _words(source_question):
            return "answer_leak"
    if len(question) > max_length_ratio * len(origin_question):
        return "too_long"
    return None


def candidates_from_outputs(pairs: Sequence[tuple[Any, Any]], outputs: Sequence[Sequence[str]], strategy: str,
                            round_: int) -> list[Candidate]:
    """Candidates from raw model outputs: ``outputs[i]`` are the samples for ``pairs[i] = (source, origin)``.

    Cleans each output (:func:`clean_output`) and, for BKI, splices the background in front of the
    source question; format problems are recorded in ``reason``.
    """
    splice = _prompt(strategy).splice
    candidates = []
    for (source, origin), samples in zip(pairs, outputs):
        for j, raw in enumerate(samples):
            text, reason = clean_output(raw, strategy, source.question)
            if reason is None and splice:
                text = f"{text} {source.question}"
            candidates.append(Candidate(strategy=strategy, round=round_, index=j, source=source, origin=origin,
                                        raw=raw, question=text, reason=reason))
    return candidates


def filter_degenerate(candidates: Sequence[Candidate], max_length_ratio: float,
                      seen: dict[str, set[str]] | None = None,
                      earlier_answers: Mapping[str, Sequence[str]] | None = None) -> Counter:
    """Mark degenerate candidates in place (``reason``) and count them by reason.

    ``seen`` maps an original record's id to the x' (as word tokens) already accepted for it; it is
    updated, so passing the same dict across strategies and rounds drops repeats everywhere.
    ``earlier_answers`` maps a fact id to its answers that revisions replaced (answer leaks too).
    """
    seen = {} if seen is None else seen
    earlier_answers = earlier_answers or {}
    for c in candidates:
        if c.reason is None:
            c.reason = degenerate_reason(c.question, c.source.question, c.origin.question, c.origin.answer,
                                         max_length_ratio, earlier_answers.get(c.origin.fact_id, ()))
        if c.reason is None:
            known = seen.setdefault(c.origin.id, set())
            key = _words(c.question)
            if key in known:
                c.reason = "duplicate"
            else:
                known.add(key)
    return Counter(c.reason for c in candidates if c.reason is not None)


# --------------------------------------------------------------------------- generation
def generate_rewrites(model, tokenizer, pairs: Sequence[tuple[Any, Any]], strategy: str, *, round_: int, count: int,
                      temperature: float, top_p: float, max_new_tokens: int, batch_size: int,
                      seed: int) -> list[Candidate]:
    """Sample ``count`` ``strategy`` outputs for each (source, origin) pair; cleaned candidates, not yet filtered."""
    prompts = [rewrite_prompt(tokenizer, strategy, source.question) for source, _ in pairs]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                       batch_size=max(1, batch_size // max(count, 1)), num_return_sequences=count, do_sample=True,
                       temperature=temperature, top_p=top_p, seed=seed, desc=f"augment {strategy} round {round_}")
    return candidates_from_outputs(pairs, outputs, strategy, round_)


@dataclass
class Augmentation:
    """The result of :func:`self_distillation`: kept pairs, every candidate, and the counts."""
    records: list[AugmentedRecord]
    candidates: list[Candidate]
    summary: dict


def rewrite_seed(stage_seed: int, round_: int, strategy_index: int) -> int:
    """The sampling seed of one strategy's rewrites in one round of a stage (``stage_seed``:
    :func:`mscl.pipeline.stages.stage_seed`)."""
    return stage_seed * 1000 + 10 * round_ + strategy_index


def rewrite_round(model, tokenizer, sources: Mapping[str, Sequence[tuple[Any, Any]]], strategies: Sequence[str], *,
                  round_: int, params, seed: int, scale: float, backbone_weights: dict | None = None,
                  seen: dict[str, set[str]] | None = None,
                  earlier_answers: Mapping[str, Sequence[str]] | None = None,
                  phases: dict[str, float] | None = None) -> list[Candidate]:
    """One round of rewrites: each strategy's outputs for its ``(source, origin)`` pairs, generated
    with ``scale`` of the model's fine-tuning delta since ``backbone_weights``
    (:func:`mscl.engine.models.interpolated_weights`) and seeded per strategy (:func:`rewrite_seed`),
    then marked degenerate or not (:func:`filter_degenerate`; ``seen`` drops repeats across the
    strategies, and across rounds when the same dict is passed again). Not yet scored or selected.
    ``phases`` collects each strategy's generation time (``rewrite_<strategy>``)."""
    aug = params.augment
    batch: list[Candidate] = []
    for k, strategy in enumerate(strategies):
        if not sources[strategy]:
            continue
        with timed(phases, f"rewrite_{strategy}"), interpolated_weights(model, backbone_weights, scale):
            produced = generate_rewrites(model, tokenizer, sources[strategy], strategy, round_=round_,
                                         count=aug.count, temperature=aug.temperature, top_p=aug.top_p,
                                         max_new_tokens=aug.max_new_tokens, batch_size=params.eval.batch_size,
                                         seed=rewrite_seed(seed, round_, k))
        filter_degenerate(produced, aug.max_length_ratio, seen, earlier_answers)
        batch += produced
    return batch


def _score_usable(model, tokenizer, batch: Sequence[Candidate], params, selection: str,
                  phases: dict[str, float] | None = None) -> None:
    """Score the round's usable candidates in place: MI against the original question and, for
    dynamic selection with ``augment.indication``, the LLM indication (asked of the model itself);
    ``phases`` collects the time of each (``mi``, ``indication``)."""
    aug = params.augment
    usable = [c for c in batch if c.reason is None]
    with timed(phases, "mi"):
        for c in usable:
            c.mi = mutual_information(c.question, c.origin.question)
    if selection != "dynamic" or not aug.indication or not usable:
        return
    with timed(phases, "indication"):
        verdicts = llm_indication(model, tokenizer, [c.question for c in usable], [c.origin.question for c in usable],
                                  [c.origin.answer for c in usable], min_f1=aug.indication_f1,
                                  max_new_tokens=params.eval.max_new_tokens, batch_size=params.eval.batch_size)
    for c, v in zip(usable, verdicts):
        c.indication, c.rewrite_answer, c.original_answer = v["indication"], v["rewrite_answer"], v["original_answer"]


def _check_request(strategies: Sequence[str], selection: str, aug, backbone_weights: dict | None) -> None:
    """Unknown strategies and selection modes are errors; a rewriter scale without the backbone's
    weights to scale towards is a warning (the model then rewrites at full strength)."""
    for s in strategies:
        _prompt(s)
    if selection not in SELECTION_MODES:
        raise ValueError(f"unknown selection mode {selection!r}; known: {', '.join(SELECTION_MODES)}")
    if backbone_weights is None and aug.rewriter_scale < 1.0:
        warnings.warn(f"augment.rewriter_scale={aug.rewriter_scale} but no backbone_weights were given: the "
                      "model rewrites at full strength (scale 1.0)", stacklevel=3)


def self_distillation(model, tokenizer, records: Sequence, *, strategies: Sequence[str], selection: str,
                      keep_fraction: float, params, seed: int, backbone_weights: dict | None = None,
                      earlier_answers: Mapping[str, Sequence[str]] | None = None) -> Augmentation:
    """Augment ``records`` with the model itself, round after round, and select what to keep.

    ``params`` is a :class:`mscl.common.params.TrainingParams` (``augment`` for the knobs; ``eval`` for the
    batch size and the indication's answer length). Per round and strategy: generate, drop
    degenerate outputs, score MI against the original question; then (``selection == "dynamic"``
    with ``augment.indication``) ask for the LLM indication and select (:func:`mscl.core.selection.
    select_candidates`); the selected x' are the next round's sources. Deterministic for a seed.

    ``backbone_weights`` (:func:`mscl.engine.models.lora_target_weights` of the backbone before stage 1):
    the rewrites are generated with ``augment.rewriter_scale`` of the model's fine-tuning delta
    (:func:`mscl.engine.models.interpolated_weights`); the LLM indication always asks the model itself.
    ``earlier_answers``: fact id -> the answers revisions replaced; a rewrite naming one is a leak.
    """
    aug = params.augment
    _check_request(strategies, selection, aug, backbone_weights)
    tic = time.perf_counter()
    sources = {s: [(r, r) for r in records] for s in strategies}
    seen: dict[str, set[str]] = {}
    everything: list[Candidate] = []
    phases: dict[str, float] = {}
    for round_ in range(1, aug.rounds + 1):
        batch = rewrite_round(model, tokenizer, sources, strategies, round_=round_, params=params, seed=seed,
                              scale=aug.rewriter_scale, backbone_weights=backbone_weights, seen=seen,
                              earlier_answers=earlier_answers, phases=phases)
        _score_usable(model, tokenizer, batch, params, selection, phases)
        select_candidates(batch, selection, keep_fraction=keep_fraction, quantile=aug.mi_quantile,
                          minimum=aug.mi_min, use_indication=aug.indication, seed=seed)
        for strategy in strategies:  # what a strategy selected is what it rewrites next round
            sources[strategy] = [(c.record(), c.origin) for c in batch if c.kept and c.strategy == strategy]
        everything += batch
    kept = [c.record() for c in everything if c.kept]
    summary = summarize(everything, strategies=strategies, selection=selection, keep_fraction=keep_fraction,
                        rounds=aug.rounds, n_records=len(records))
    summary["seconds"] = round(time.perf_counter() - tic, 1)
    summary["phases_s"] = {name: round(seconds, 2) for name, seconds in phases.items()}
    return Augmentation(records=kept, candidates=everything, summary=summary)


def rewriter_scale_counts(model, tokenizer, records: Sequence, *, scales: Sequence[float], params, seed: int,
                          backbone_weights: dict | None) -> list[dict]:
    """How usable the rewrites are at each rewriter scale (``augment.rewriter_scale``'s candidates):
    round 1 of every strategy rewriting ``records`` as :func:`self_distillation` does (the same seeds
    for ``seed``; repeats dropped across strategies), at each of ``scales``. One row per scale and
    strategy: outputs ``generated``, ``usable`` ones (past the degenerate-output filters, before
    selection) and the count of every reason in :data:`DEGENERATE_REASONS`."""
    rows = []
    for scale in scales:
        sources = {s: [(r, r) for r in records] for s in STRATEGIES}
        batch = rewrite_round(model, tokenizer, sources, STRATEGIES, round_=1, params=params, seed=seed, scale=scale,
                              backbone_weights=backbone_weights, seen={})
        for strategy in STRATEGIES:
            produced = [c for c in batch if c.strategy == strategy]
            reasons = Counter(c.reason for c in produced if c.reason is not None)
            rows.append({"rewriter_scale": scale, "strategy": strategy, "generated": len(produced),
                         "usable": sum(c.reason is None for c in produced),
                         **{reason: reasons.get(reason, 0) for reason in DEGENERATE_REASONS}})
    return rows


def summarize(candidates: Sequence[Candidate], *, strategies: Sequence[str], selection: str, keep_fraction: float,
              rounds: int, n_records: int) -> dict:
    """Counts per strategy and round: generated, dropped as degenerate (by reason), not selected
    (by reason) and kept; and the totals. Every reason is listed, with 0 where none applied."""
    by_group = []
    for round_ in range(1, rounds + 1):
        for strategy in strategies:
            group = [c for c in candidates if c.strategy == strategy and c.round == round_]
            degenerate = Counter(c.reason for c in group if c.reason is not None)
            unselected = Counter(c.selection for c in group if c.reason is None and not c.kept)
            by_group.append({
                "strategy": strategy, "round": round_,
                "sources": len({c.source.id for c in group}),
                "generated": len(group),
                "degenerate": {r: degenerate.get(r, 0) for r in DEGENERATE_REASONS},
                "not_selected": {r: unselected.get(r, 0) for r in SELECTION_REASONS},
                "kept": sum(c.kept for c in group),
            })
    return {"strategies": list(strategies), "selection": selection, "keep_fraction": keep_fraction,
            "rounds": rounds, "records": n_records, "generated": len(candidates),
            "degenerate": sum(c.reason is not None for c in candidates),
            "kept": sum(c.kept for c in candidates), "by_strategy_round": by_group}


def summary_rows(summary: dict) -> list[dict]:
    """The per-strategy, per-round counts of a summary as flat rows (one column per reason), for a table."""
    rows = []
    for g in summary["by_strategy_round"]:
        row = {k: g[k] for k in ("strategy", "round", "sources", "generated")}
        row.update({f"degenerate:{k}": v for k, v in g["degenerate"].items()})
        row.update({f"not_selected:{k}": v for k, v in g["not_selected"].items()})
        row["kept"] = g["kept"]
        rows.append(row)
    return rows


def record_row(record: AugmentedRecord) -> dict:
    """An augmented record as a JSONL row (its fields in order)."""
    return dataclasses.asdict(record)
