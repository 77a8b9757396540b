"""The classifier step: a member's normalised text to a probability per intent.

Features are character n-grams (1-3) of the text and n-grams (2-4) of its toneless pinyin, so
「鸡分」 (a homophone typo) and 「jifen」 (typed in pinyin) land where 「积分」 does. A linear
SVM (scikit-learn's ``LinearSVC``) is fitted on the labelled lines in ``corpus/`` plus the brand's
own words; training is deterministic and takes a fraction of a second, so every process trains
at start-up and nothing is downloaded or stored. (A logistic regression scored no better in
cross-validation and took seconds to fit.)

Prediction does not go through scikit-learn's per-call validation (hundreds of microseconds per
message): the fitted vocabulary, idf weights and coefficients are compiled into one table, and
a message costs a dictionary lookup per n-gram and one small matrix product.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pypinyin.pinyin_dict import pinyin_dict
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

# Regularisation of the linear SVM: larger fits the corpus more tightly.
_C = 1.0
# A linear SVM scores each intent by a margin, not a probability; a softmax over the margins
# times this factor gives the confidence the clarification policy reads (chosen by
# cross-validation on the training part only).
_SHARPNESS = 4.0


@lru_cache(maxsize=8192)
def _syllable(ch: str) -> str:
    """A character's first pinyin reading without tones; other characters as they are."""
    readings = pinyin_dict.get(ord(ch))
    if readings is None:
        return ch if ch.isascii() and ch.isalnum() else ""
    first = readings.split(",", 1)[0]
    return "".join(c for c in unicodedata.normalize("NFKD", first) if c.isascii())


def pinyin_of(text: str) -> str:
    """「我的积分」 → "wodejifen"; ASCII letters and digits are kept (pinyin typed as such)."""
    return "".join(_syllable(ch) for ch in text)


def _ngrams(text: str, low: int, high: int) -> Iterable[str]:
    padded = f" {text} "
    for n in range(low, high + 1):
        for start in range(len(padded) - n + 1):
            yield padded[start : start + n]


def char_ngrams(text: str) -> list[str]:
    """Character 1-3-grams of the text (with a space marking its ends)."""
    return list(_ngrams(text, 1, 3))


def pinyin_ngrams(text: str) -> list[str]:
    """2-4-grams of the text's toneless pinyin."""
    spelled = pinyin_of(text)
    return list(_ngrams(spelled, 2, 4)) if spelled else []


@dataclass(frozen=True)
class _Space:
    """One fitted feature space: n-gram → (column, idf)."""

    columns: dict[str, tuple[int, float]]

    def weights(self, grams: Iterable[str]) -> list[tuple[int, float]]:
        """The space's tf-idf vector, l2-normalised, as (column, value) pairs."""
        counts = Counter(grams)
        found = [
            (column, count * idf)
            for gram, count in counts.items()
            if (entry := self.columns.get(gram)) is not None
            for column, idf in (entry,)
        ]
        norm = math.sqrt(sum(v * v for _, v in found))
        return [(c, v / norm) for c, v in found] if norm else []


class IntentClassifier:
    """Probabilities per intent for a normalised text (see the module's docstring)."""

    def __init__(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        if len(set(labels)) < 3:
            raise ValueError("the classifier needs lines of at least three intents")
        spaces = []
        blocks = []
        offset = 0
        for analyzer in (char_ngrams, pinyin_ngrams):
            vectorizer = TfidfVectorizer(analyzer=analyzer, sublinear_tf=False)
            matrix = vectorizer.fit_transform(texts)
            idf = vectorizer.idf_
            spaces.append(
                _Space(
                    {
                        gram: (offset + column, float(idf[column]))
                        for gram, column in vectorizer.vocabulary_.items()
                    }
                )
            )
            blocks.append(matrix)
            offset += matrix.shape[1]
        features = hstack(blocks).tocsr()
        model = LinearSVC(C=_C)
        model.fit(features, list(labels))
        self.intents: tuple[str, ...] = tuple(str(c) for c in model.classes_)
        # Columns × intents, so a message's score is a sum of a few rows.
        self._coef = np.ascontiguousarray(model.coef_.T)
        self._intercept = model.intercept_.copy()
        self._spaces = tuple(spaces)

    def probabilities(self, text: str) -> dict[str, float]:
        """Each intent's probability for the normalised ``text``."""
        rows: list[int] = []
        values: list[float] = []
        for space, grams in zip(
            self._spaces, (char_ngrams(text), pinyin_ngrams(text)), strict=True
        ):
            for column, value in space.weights(grams):
                rows.append(column)
                values.append(value)
        scores = self._intercept.copy()
        if rows:
            scores += np.asarray(values) @ self._coef[rows]
        scores *= _SHARPNESS
        scores -= scores.max()
        exp = np.exp(scores)
        exp /= exp.sum()
        return dict(zip(self.intents, exp.tolist(), strict=True))

    def ranked(self, text: str) -> list[tuple[str, float]]:
        """Intents by probability, likeliest first."""
        return sorted(self.probabilities(text).items(), key=lambda item: -item[1])
