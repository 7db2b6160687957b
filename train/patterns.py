"""Target spike patterns beyond class labels: tables of given output trains.

A target table ``(K, T, C)`` holds one output train per label (``train.losses``, ``LossSpec.targets``).
Class coding is one such table; these functions build others, for tasks whose answer is a spike
sequence rather than a class (the second seed's "behaviour control" argument): label ``k`` asks
the ``C`` output neurons to emit pattern ``k``.

``digit_patterns`` is the built-in task's table (preset ``digits-patterns``): each of the ten
digits asks for its own fixed pattern over the output neurons, each neuron firing once at a given
step or staying silent (a sequence of commands, as a controller would send them).

>>> table = random_patterns(3, 12, 4, seed=1)
>>> table.shape, sorted(set(table.ravel().tolist()))
((3, 12, 4), [0.0, 1.0])
"""
from __future__ import annotations

import numpy as np

DIGIT_PATTERN_SEED = 2024
DIGIT_PATTERN_FIRST_STEP = 2  # two synaptic layers: Lava's timing delivers nothing earlier


def random_patterns(K: int, T: int, C: int, max_spikes: int = 3, first_step: int = 0, min_gap: int = 2,
                    seed: int = 0) -> np.ndarray:
    """``K`` random output patterns ``(K, T, C)``, float32 0/1, all different.

    Each neuron of each pattern fires ``0 .. max_spikes`` spikes (uniformly) at steps
    ``>= first_step``, at least ``min_gap`` steps apart; every pattern has at least one spike.

    Parameters
    ----------
    K, T, C : int
        Patterns (labels), steps, output neurons.
    max_spikes : int
        Most spikes per neuron and pattern.
    first_step : int
        No spike before this step (e.g. the network's delay in Lava's timing: one step per layer).
    min_gap : int
        Smallest distance in steps between two spikes of one neuron.
    seed : int
    """
    for name, v, lo in (("K", K, 1), ("T", T, 1), ("C", C, 1), ("max_spikes", max_spikes, 1), ("min_gap", min_gap, 1)):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if not 0 <= first_step < T:
        raise ValueError(f"first_step must be in [0, T={T}), got {first_step!r}")
    slots = list(range(first_step, T, min_gap))  # candidate steps, min_gap apart
    rng = np.random.default_rng(seed)
    table = np.zeros((K, T, C), dtype=np.float32)
    seen = set()
    for k in range(K):
        for _ in range(1000):
            p = np.zeros((T, C), dtype=np.float32)
            for c in range(C):
                n = int(rng.integers(0, min(max_spikes, len(slots)) + 1))
                p[rng.choice(slots, size=n, replace=False), c] = 1.0
            key = p.tobytes()
            if p.any() and key not in seen:
                break
        else:
            raise ValueError(f"cannot draw {K} different patterns of {T} steps x {C} neurons")
        seen.add(key)
        table[k] = p
    return table


def digit_patterns(T: int, C: int) -> np.ndarray:
    """The built-in task's table: ten patterns (one per digit), fixed seed; each neuron fires at
    most once, never in the first two steps (so a two-layer network in Lava's timing can emit every
    pattern)."""
    return random_patterns(10, T, C, max_spikes=1, first_step=DIGIT_PATTERN_FIRST_STEP, min_gap=2,
                           seed=DIGIT_PATTERN_SEED)
