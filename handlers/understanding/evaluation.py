"""Measuring the pipeline on labelled lines, as ``rasa test nlu`` does: accuracy per intent and
overall, the confusion between intents, the lines that would reach a person without asking,
and CPU time per message. ``bench/understanding.py`` prints it; a test holds it to the goals.

``cross_validate`` measures the same on the training part alone (each fold understood by a
pipeline trained on the other folds): the figure every change is tuned by, so the held-out part
stays unseen."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sklearn.model_selection import StratifiedKFold

from handlers.understanding.pipeline import FAQ, FAQ_PREFIX, OUT_OF_SCOPE, Understander

NOT_UNDERSTOOD = "(asked)"


@dataclass
class Report:
    """What ``evaluate`` found."""

    lines: int = 0
    right: int = 0
    by_intent: dict[str, tuple[int, int]] = field(default_factory=dict)  # intent: (right, all)
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    handed_over: list[str] = field(default_factory=list)
    clarified: int = 0
    cpu_seconds: float = 0.0
    wrong: list[tuple[str, str, str]] = field(default_factory=list)  # (label, got, text)

    @property
    def accuracy(self) -> float:
        return self.right / self.lines if self.lines else 0.0

    @property
    def handover_share(self) -> float:
        return len(self.handed_over) / self.lines if self.lines else 0.0

    @property
    def cpu_per_message(self) -> float:
        return self.cpu_seconds / self.lines if self.lines else 0.0

    def add(self, other: Report) -> None:
        """Count ``other``'s lines in this report too (one fold of a cross-validation)."""
        self.lines += other.lines
        self.right += other.right
        for name, (right, total) in other.by_intent.items():
            had_right, had_total = self.by_intent.get(name, (0, 0))
            self.by_intent[name] = (had_right + right, had_total + total)
        self.by_intent = dict(sorted(self.by_intent.items()))
        self.confusion.update(other.confusion)
        self.handed_over += other.handed_over
        self.clarified += other.clarified
        self.cpu_seconds += other.cpu_seconds
        self.wrong += other.wrong


def label_of(understander: Understander, text: str) -> str:
    """What the pipeline makes of ``text``, in the corpus's labels (``faq:<key>``; a message
    it asks about or does not understand is ``(asked)``)."""
    found = understander.understand(text)
    if found.intent is None:
        return NOT_UNDERSTOOD
    if found.intent == FAQ:
        return FAQ_PREFIX + found.slots.get(FAQ, "")
    return found.intent


def evaluate(understander: Understander, rows: Sequence[tuple[str, str]]) -> Report:
    """Run every (label, text) through the pipeline. An out-of-scope line is right when it is
    not taken for a request; any other line when its intent is the label's."""
    report = Report()
    totals: Counter[str] = Counter()
    rights: Counter[str] = Counter()
    started = time.process_time()
    got = [label_of(understander, text) for _, text in rows]
    report.cpu_seconds = time.process_time() - started
    for (label, text), answer in zip(rows, got, strict=True):
        report.lines += 1
        totals[label] += 1
        ok = answer == label or (label == OUT_OF_SCOPE and answer == NOT_UNDERSTOOD)
        if ok:
            rights[label] += 1
            report.right += 1
        else:
            report.confusion[(label, answer)] += 1
            report.wrong.append((label, answer, text))
        if answer == NOT_UNDERSTOOD and label != OUT_OF_SCOPE:
            report.clarified += 1
        if answer == "human" and label != "human":
            report.handed_over.append(text)
    report.by_intent = {name: (rights[name], totals[name]) for name in sorted(totals)}
    return report


def cross_validate(
    train: Callable[[Sequence[tuple[str, str]]], Understander],
    rows: Sequence[tuple[str, str]],
    folds: int = 5,
    seed: int = 17,
) -> Report:
    """Stratified ``folds``-fold cross-validation over ``rows`` (the training part): each fold
    is evaluated by ``train(the other folds)``; the reports are added up."""
    if folds < 2:
        raise ValueError("cross-validation needs at least two folds")
    labels = [label for label, _ in rows]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    report = Report()
    for fitted_on, held in splitter.split(labels, labels):
        understander = train([rows[i] for i in fitted_on])
        report.add(evaluate(understander, [rows[i] for i in held]))
    return report
