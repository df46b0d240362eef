"""minigrad.keras: a Keras-3-shaped front end over minigrad's tensors, tape and compiled
recurrent kernels.

    from minigrad.keras import Sequential, layers
    model = Sequential([layers.Embedding(10000, 50), layers.SimpleRNN(50),
                        layers.Dense(32, activation="relu"), layers.Dense(1, activation="sigmoid")])
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=32, validation_split=0.2)

Weights have Keras's names, shapes and gate orders, so parameter counts equal Keras's; the
recurrent layers run on the same Cython kernels as ``minigrad.nn``. See docs/keras.md.
"""

from . import (
    activations,
    backend,
    callbacks,
    initializers,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    utils,
)
from .backend import clear_session
from .layer import Input, KerasTensor, Layer
from .models import Model, Sequential

__all__ = [
    "Input",
    "KerasTensor",
    "Layer",
    "Model",
    "Sequential",
    "activations",
    "backend",
    "callbacks",
    "clear_session",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "models",
    "optimizers",
    "utils",
]
