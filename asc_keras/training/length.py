"""How long a training runs: a number of optimiser steps, in rounds.

The report trains for a number of epochs (800, sec. 4.2).  An epoch is a different amount of
learning on sets of different sizes, so a short run sized in epochs that suits 20,000 clips
stops 1,000 clips long before the model stops learning.  A budget in optimiser steps carries
across set sizes: with ``steps`` set, a training is ``steps`` updates over an endless,
reshuffled stream of the training examples, cut into ``rounds`` rounds; each round ends with
what a Keras epoch ends with (validation, a backup to resume from, a row of ``history.csv``).
Without ``steps`` a round is one pass over the data (an epoch), the report's convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingLength:
    """``rounds`` Keras epochs of ``steps_per_round`` optimiser steps each.

    ``stream``: the batches come from an endless reshuffled stream (a step budget); False: each
    round is one pass over the examples (an epoch budget).
    """

    rounds: int
    steps_per_round: int
    stream: bool

    @property
    def steps(self) -> int:
        """Optimiser steps of the whole training (what the learning-rate schedule spans)."""
        return self.rounds * self.steps_per_round


def training_length(
    examples: int,
    batch_size: int,
    epochs: int,
    steps: int | None = None,
    rounds: int = 10,
    min_passes: float | None = None,
) -> TrainingLength:
    """The length of one training of ``examples`` examples in batches of ``batch_size``.

    ``steps`` None: ``epochs`` passes over the data.  Otherwise ``steps`` updates, or where more,
    the updates of ``min_passes`` passes over the examples (None: no floor), rounded up to a
    whole number of rounds, in ``rounds`` rounds (fewer when there are fewer steps).
    """
    if steps is None:
        return TrainingLength(max(1, epochs), max(1, math.ceil(examples / batch_size)), False)
    if steps < 1 or rounds < 1:
        raise ValueError(f"a step budget needs steps >= 1 and rounds >= 1, got {steps}, {rounds}")
    if min_passes is not None:
        # A fixed step budget is fewer passes on a bigger set: 800 of 32 are 9 over the built-in
        # set's 2,800 clips and 6.7 over 3,800, where a student was still learning at its end.
        if not min_passes > 0:  # NaN too
            raise ValueError(
                f"optim.min_passes must be above 0 (or null: no floor), got {min_passes}"
            )
        steps = max(steps, math.ceil(min_passes * examples / batch_size))
    rounds = min(rounds, steps)
    return TrainingLength(rounds, math.ceil(steps / rounds), True)


def floor_sets_length(
    examples: int, batch_size: int, steps: int | None, rounds: int, min_passes: float | None
) -> bool:
    """Whether ``min_passes``, not ``steps``, sets a step budget's length on ``examples``
    examples: :func:`training_length` with the floor is longer than without it (False for an
    epoch budget or no floor), so more ``steps`` would not lengthen that training."""
    if steps is None or min_passes is None:
        return False
    with_floor = training_length(examples, batch_size, 1, steps, rounds, min_passes)
    return with_floor.steps > training_length(examples, batch_size, 1, steps, rounds).steps
