"""Keras layers over minigrad tensors: ``from minigrad.keras import layers``."""

from ..layer import Input, InputLayer, Layer
from .core import Activation, Dense, Dropout, Embedding, Flatten, RepeatVector
from .recurrent import GRU, LSTM, SimpleRNN
from .text import TextVectorization
from .wrappers import Bidirectional, TimeDistributed

__all__ = [
    "GRU",
    "LSTM",
    "Activation",
    "Bidirectional",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "Input",
    "InputLayer",
    "Layer",
    "RepeatVector",
    "SimpleRNN",
    "TextVectorization",
    "TimeDistributed",
]
