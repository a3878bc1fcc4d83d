"""Dynamic data selection: which augmented pairs (x', y) are worth training on (the paper's third part).

The paper keeps an augmented question x' by two heuristics, and the kept set feeds both the next
round of augmentation and the fine-tuning:

1. **Mutual information** between x' and its counterpart, from word co-occurrence counts::

       MI(x'; x^') = sum over word pairs (w, w^') of N(w, w^') log( N(w, w^') / (N(w) N(w^')) )

   The slides define neither x^' nor N. Our reading (:func:`mutual_information`):

   * x^' is the counterpart of x': the **original training question x** that x' was derived from
     (in round r > 1 x' is a rewrite of a rewrite; it is still scored against the original x, so
     rewrites cannot drift away from the question one round at a time);
   * words are lower-cased word tokens (``\\w+``), stop words included;
   * N(w) and N(w^') are the relative frequencies of w in x' and of w^' in x (each sums to 1);
   * N(w, w^') counts a pair as co-occurring only when it is the same word in both texts: N(w, w) =
     min(N(w) in x', N(w) in x) and N(w, w^') = 0 for w != w^' (which contributes nothing: 0 log 0 =
     0). This is not an estimate of a mutual information between random variables: it is a
     **lexical-overlap score**, a frequency-weighted count of the words x' shares with x, each
     shared word weighted by how rare it is in the two texts.

   So MI(x'; x) = sum over words w in both texts of m(w) log( m(w) / (p'(w) p(w)) ) with
   m(w) = min(p'(w), p(w)). Every term is >= 0 (m / (p' p) = 1 / max(p', p) >= 1); two texts with
   no word in common score 0; a text with itself scores its word entropy H(x) = -sum p log p, the
   largest value any text can reach against x. Example: x' = "the cat sat", x = "the cat ran away":
   p'(the) = p'(cat) = 1/3, p(the) = p(cat) = 1/4, m = 1/4 each, so
   MI = 2 * 1/4 * log((1/4) / (1/3 * 1/4)) = (1/2) log 3 = 0.549 nats.

   Longer x' spread their probability over more words, so BKI and LCE rewrites (which add text by
   design) score lower than paraphrases of the same question. Thresholds are therefore taken per
   strategy and round: a quantile of the MI scores of that group (``augment.mi_quantile``), plus an
   absolute floor (``augment.mi_min``).

2. **Indication from the LLM** (:func:`llm_indication`): the model at the start of the stage answers
   x' and x greedily; the indication holds when its answer to x' is correct for y (the evaluation's
   containment test, :func:`mscl.core.metrics.is_correct`) or is the same answer it gives to x: x'
   "produces the same result as x". "The same answer" is a token F1 (SQuAD's answer overlap, over
   lower-cased word tokens) of at least ``augment.indication_f1`` between the two answers; 1.0
   asks for identical answers. A small model answers in whole sentences whose wording varies with
   the question's (SmolLM2-135M gave identical answers to 0 of 60 rewrites), so exact equality
   would reject nearly everything; at F1 >= 0.5 the rewrites that changed the subject (the answer
   is about something else) still fail.

Selection modes (``SELECTION_MODES``): ``all`` keeps every non-degenerate rewrite (the ablation
"data augmentation" row), ``random`` keeps a seeded random fraction of each (strategy, round) group
(the RS baselines: 50%, 25%, 12.5%), ``dynamic`` keeps x' whose MI passes the threshold and (when
``augment.indication``) whose indication holds (DS, the full method).
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

from mscl.core.metrics import is_correct
from mscl.engine.generation import answer_questions

SELECTION_MODES = ("all", "random", "dynamic")
# why a non-degenerate rewrite was not selected (counted in the augmentation summary)
SELECTION_REASONS = ("low_mi", "no_indication", "random")

_WORD = re.compile(r"\w+")


def word_tokens(text: str) -> list[str]:
    """Lower-cased word tokens (``\\w+``): the units the mutual information counts."""
    return _WORD.findall(text.lower())


def mutual_information(a: str, b: str) -> float:
    """Word co-occurrence mutual information between ``a`` (x') and ``b`` (x), in nats.

    MI(x'; x) = sum over words w in both texts of m(w) log( m(w) / (p'(w) p(w)) ),
    p'(w) and p(w) the relative frequencies of w in x' and in x, m(w) = min(p'(w), p(w)) the
    probability that w co-occurs in both (see the module docstring for the reading of the paper's
    formula). Symmetric; 0 when the texts share no word or one is empty; MI(x; x) = H(x).
    """
    ta, tb = word_tokens(a), word_tokens(b)
    if not ta or not tb:
        return 0.0
    ca, cb = Counter(ta), Counter(tb)
    na, nb = len(ta), len(tb)
    mi = 0.0
    for w in sorted(ca.keys() & cb.keys()):  # sorted: the float sum is the same on every run
        pa, pb = ca[w] / na, cb[w] / nb
        joint = min(pa, pb)
        mi += joint * math.log(joint / (pa * pb))
    return mi


def answer_overlap(a: str, b: str) -> float:
    """Token F1 of two answers (lower-cased word tokens, as multisets): 2 P R / (P + R) with
    P = |a & b| / |a|, R = |a & b| / |b|; 1.0 for identical answers, 0.0 if either is empty."""
    ta, tb = Counter(word_tokens(a)), Counter(word_tokens(b))
    common = sum((ta & tb).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(ta.values()), common / sum(tb.values())
    return 2 * precision * recall / (precision + recall)


def llm_indication(model, tokenizer, rewrites: Sequence[str], originals: Sequence[str], answers: Sequence[str],
                   *, min_f1: float, max_new_tokens: int, batch_size: int) -> list[dict]:
    """The LLM indication for each (x', x, y): does the model answer x' with y, or as it answers x?

    indication = is_correct(answer(x'), y) or answer_overlap(answer(x'), answer(x)) >= min_f1.
    Both are answered greedily (the evaluation's decoding); each distinct x is answered once.
    Returns one ``{"indication", "rewrite_answer", "original_answer"}`` per rewrite.
    """
    if not (len(rewrites) == len(originals) == len(answers)):
        raise ValueError(f"lengths differ: {len(rewrites)} rewrites, {len(originals)} originals, "
                         f"{len(answers)} answers")
    distinct = list(dict.fromkeys(originals))
    answered = answer_questions(model, tokenizer, list(rewrites) + distinct, max_new_tokens=max_new_tokens,
                                batch_size=batch_size)
    of_original = dict(zip(distinct, answered[len(rewrites):]))
    out = []
    for x_new, x, y, a_new in zip(rewrites, originals, answers, answered[: len(rewrites)]):
        a = of_original[x]
        out.append({"indication": is_correct(a_new, y) or answer_overlap(a_new, a) >= min_f1,
                    "rewrite_answer": a_new, "original_answer": a})
    return out


def keep_count(n: int, fraction: float) -> int:
    """How many of ``n`` items a fraction keeps: round(n * fraction), halves rounded up."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    return int(math.floor(n * fraction + 0.5))


def random_selection(items: Sequence, fraction: float, seed: int | str) -> list:
    """A seeded random subset of exactly ``keep_count(len(items), fraction)`` items, in input order.

    ``random.Random(seed)`` draws the indices, so the same seed keeps the same subset (a string seed
    is hashed by ``random`` itself with SHA-512, not by Python's salted ``hash()``).
    """
    k = keep_count(len(items), fraction)
    chosen = sorted(random.Random(seed).sample(range(len(items)), k))
    return [items[i] for i in chosen]


def mi_threshold(scores: Sequence[float], quantile: float, minimum: float) -> float:
    """The MI a rewrite needs: max(the ``quantile`` of ``scores``, ``minimum``); quantile 0 means no quantile."""
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"mi_quantile must be in [0, 1], got {quantile}")
    floor = float(np.quantile(np.asarray(scores, dtype=np.float64), quantile)) if scores and quantile > 0 else -math.inf
    return max(floor, minimum)


def dynamic_selection(mi: Sequence[float], indication: Sequence[bool] | None, *, quantile: float,
                      minimum: float) -> list[str | None]:
    """Per rewrite of one group: None when kept, else why not (``"low_mi"`` or ``"no_indication"``).

    Kept: MI >= :func:`mi_threshold` of the group's scores AND (when ``indication`` is given) the
    LLM indication holds. Deterministic: no randomness is involved.
    """
    threshold = mi_threshold(mi, quantile, minimum)
    reasons: list[str | None] = []
    for i, score in enumerate(mi):
        if score < threshold:
            reasons.append("low_mi")
        elif indication is not None and not indication[i]:
            reasons.append("no_indication")
        else:
            reasons.append(None)
    return reasons


def select_candidates(candidates: Sequence, mode: str, *, keep_fraction: float, quantile: float, minimum: float,
                      use_indication: bool, seed: int) -> None:
    """Decide, in place, which non-degenerate candidates of one round are kept.

    ``candidates``: objects with ``strategy``, ``round``, ``reason`` (None when not degenerate),
    ``mi`` and ``indication``; this sets ``selection`` (why not selected, or None) and ``kept``.
    Groups are (strategy, round), so every strategy keeps its own share (see the module docstring).
    """
    if mode not in SELECTION_MODES:
        raise ValueError(f"unknown selection mode {mode!r}; known: {', '.join(SELECTION_MODES)}")
    groups: dict[tuple, list] = defaultdict(list)
    for c in candidates:
        c.selection, c.kept = None, False
        if c.reason is None:
            groups[(c.strategy, c.round)].append(c)
    for (strategy, round_), group in sorted(groups.items()):
        if mode == "all":
            reasons = [None] * len(group)
        elif mode == "random":
            kept = {id(c) for c in random_selection(group, keep_fraction, f"{seed}:{strategy}:{round_}")}
            reasons = [None if id(c) in kept else "random" for c in group]
        else:
            flags = [bool(c.indication) for c in group] if use_indication else None
            reasons = dynamic_selection([c.mi for c in group], flags, quantile=quantile, minimum=minimum)
        for c, why in zip(group, reasons):
            c.selection, c.kept = why, why is None
