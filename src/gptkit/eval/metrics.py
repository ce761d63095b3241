"""Evaluation metrics: accuracy and macro-F1, BLEU and chrF (sacrebleu), ROUGE (rouge-score), SQuAD EM/F1.

Every function takes plain strings or labels and returns a float in [0, 1] (BLEU and chrF: 0-100, as
sacrebleu reports them). Several references per prediction are allowed where the metric allows it.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCTUATION = set(string.punctuation)


def accuracy(predictions: Sequence[object], golds: Sequence[object]) -> float:
    """Share of predictions equal to their gold label."""
    _check_lengths(predictions, golds)
    return sum(p == g for p, g in zip(predictions, golds, strict=True)) / len(golds)


def macro_f1(
    predictions: Sequence[object], golds: Sequence[object], labels: Sequence[object] | None = None
) -> float:
    """Unweighted mean over labels of each label's F1 (a label never predicted nor gold scores 0)."""
    _check_lengths(predictions, golds)
    labels = list(labels) if labels is not None else sorted(set(golds) | set(predictions), key=str)
    return sum(_label_f1(predictions, golds, label) for label in labels) / len(labels)


def _label_f1(predictions: Sequence[object], golds: Sequence[object], label: object) -> float:
    """F1 of one label treated as the positive class."""
    pairs = list(zip(predictions, golds, strict=True))
    true_pos = sum(p == label and g == label for p, g in pairs)
    predicted = sum(p == label for p, _ in pairs)
    actual = sum(g == label for _, g in pairs)
    return 2 * true_pos / (predicted + actual) if predicted + actual else 0.0


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised reference."""
    return float(any(normalize_answer(prediction) == normalize_answer(ref) for ref in references))


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """SQuAD token-overlap F1 against the best-matching reference."""
    return max(
        _overlap_f1(normalize_answer(prediction).split(), normalize_answer(ref).split()) for ref in references
    )


def _overlap_f1(predicted: list[str], reference: list[str]) -> float:
    """F1 of the bag-of-tokens overlap; two empty answers agree."""
    if not predicted or not reference:
        return float(predicted == reference)
    common = sum((Counter(predicted) & Counter(reference)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, exponential smoothing), 0-100."""
    import sacrebleu

    return sacrebleu.corpus_bleu(list(predictions), _reference_streams(references)).score


def chrf(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus chrF (sacrebleu defaults: character 6-grams, beta 2), 0-100."""
    import sacrebleu

    return sacrebleu.corpus_chrf(list(predictions), _reference_streams(references)).score


def _reference_streams(references: Sequence[Sequence[str]]) -> list[list[str]]:
    """sacrebleu wants one stream per reference position; missing references are padded with None."""
    depth = max(len(refs) for refs in references)
    return [[refs[i] if i < len(refs) else None for refs in references] for i in range(depth)]


def rouge(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (rouge-score, with Porter stemming); best reference per item."""
    from rouge_score import rouge_scorer

    kinds = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=True)
    totals = dict.fromkeys(kinds, 0.0)
    for prediction, refs in zip(predictions, references, strict=True):
        scores = [scorer.score(ref, prediction) for ref in refs]
        for kind in kinds:
            totals[kind] += max(s[kind].fmeasure for s in scores)
    return {kind: total / len(predictions) for kind, total in totals.items()}


def generation_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU, chrF, ROUGE-1/2/L, exact match and token F1 of generated texts against their references."""
    _check_lengths(predictions, references)
    pairs = list(zip(predictions, references, strict=True))
    return {
        "bleu": bleu(predictions, references),
        "chrf": chrf(predictions, references),
        **rouge(predictions, references),
        "exact_match": sum(exact_match(p, r) for p, r in pairs) / len(pairs),
        "f1": sum(token_f1(p, r) for p, r in pairs) / len(pairs),
    }


def _check_lengths(predictions: Sequence[object], golds: Sequence[object]) -> None:
    """Predictions and golds must pair up, and there must be at least one."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions but {len(golds)} references")
    if not golds:
        raise ValueError("no predictions to score")
