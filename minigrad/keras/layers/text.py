"""TextVectorization: strings -> word indices, with a vocabulary learnt by ``adapt``."""

import re
import string
from collections import Counter

import numpy as np

from ...tensor import Tensor
from ..layer import Layer

__all__ = ["TextVectorization"]

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


class TextVectorization(Layer):
    """Map strings to integer sequences, as Keras's ``TextVectorization(output_mode='int')``.

    ``adapt(texts)`` builds the vocabulary: index 0 is padding (''), 1 is out-of-vocabulary
    ('[UNK]'), then words by decreasing frequency (ties in order of first appearance);
    ``max_tokens`` bounds its size including those two. Texts are lower-cased and stripped of
    punctuation, then split on whitespace. ``output_sequence_length`` pads with 0 or truncates
    at the end. Calling the layer on a list of strings returns an int64 Tensor.
    """

    def __init__(
        self,
        max_tokens=None,
        standardize="lower_and_strip_punctuation",
        split="whitespace",
        output_mode="int",
        output_sequence_length=None,
        vocabulary=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if output_mode != "int":
            raise ValueError(
                f"TextVectorization supports output_mode='int' only, got {output_mode!r}"
            )
        if standardize not in ("lower_and_strip_punctuation", "lower", None):
            raise ValueError(
                "standardize must be 'lower_and_strip_punctuation', 'lower' or "
                f"None, got {standardize!r}"
            )
        if split not in ("whitespace", None):
            raise ValueError(f"split must be 'whitespace' or None, got {split!r}")
        self.max_tokens, self.standardize, self.split = max_tokens, standardize, split
        self.output_sequence_length = output_sequence_length
        self._vocab = ["", "[UNK]"]
        self._index = {}
        if vocabulary is not None:
            self.set_vocabulary(vocabulary)
        self.built = True

    def _tokens(self, text):
        if not isinstance(text, str):
            raise TypeError(f"TextVectorization takes strings, got {type(text).__name__}")
        if self.standardize:
            text = text.lower()
            if self.standardize == "lower_and_strip_punctuation":
                text = _PUNCT.sub("", text)
        return text.split() if self.split else [text]

    def adapt(self, data):
        """Learn the vocabulary from an iterable of strings."""
        counts = Counter()
        for text in _texts(data):
            counts.update(self._tokens(text))
        words = [w for w, _ in sorted(counts.items(), key=lambda kv: -kv[1])]
        if self.max_tokens is not None:
            words = words[: max(self.max_tokens - 2, 0)]
        self.set_vocabulary(words)

    def set_vocabulary(self, vocabulary):
        words = [w for w in vocabulary if w not in ("", "[UNK]")]
        self._vocab = ["", "[UNK]"] + list(words)
        self._index = {w: i for i, w in enumerate(self._vocab)}

    def get_vocabulary(self):
        return list(self._vocab)

    def vocabulary_size(self):
        return len(self._vocab)

    def __call__(self, inputs, **kwargs):
        seqs = [[self._index.get(w, 1) for w in self._tokens(t)] for t in _texts(inputs)]
        L = self.output_sequence_length or max((len(s) for s in seqs), default=0)
        out = np.zeros((len(seqs), L), np.int64)
        for i, s in enumerate(seqs):
            s = s[:L]
            out[i, : len(s)] = s
        return Tensor(out)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_sequence_length)


def _texts(data):
    if isinstance(data, str):
        raise TypeError(
            "TextVectorization takes a list of strings, got one string (wrap it in a list)"
        )
    return [str(t) if isinstance(t, np.str_) else t for t in np.asarray(data, dtype=object).ravel()]
