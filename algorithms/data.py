"""An endless, checkpointable stream of training problems."""

from __future__ import annotations

import random
from typing import Any, Generic, Sequence, TypeVar

T = TypeVar("T")


class ProblemStream(Generic[T]):
    """Yields the dataset in a fresh seeded shuffle each epoch.

    Its position (epoch, index) is part of the algorithm's checkpoint, so a restored run draws the
    same problems a continuous run would have drawn.
    """

    def __init__(self, items: Sequence[T], seed: int = 0) -> None:
        if not items:
            raise ValueError("the training dataset is empty")
        self.items = list(items)
        self.seed = seed
        self.epoch = 0
        self.index = 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(len(self.items)))
        random.Random(f"{self.seed}/{epoch}").shuffle(order)
        return order

    def take(self, n: int) -> list[T]:
        """The next ``n`` items, crossing into new epochs as needed."""
        out = []
        while len(out) < n:
            if self.index == len(self._order):
                self.epoch += 1
                self.index = 0
                self._order = self._shuffled(self.epoch)
            out.append(self.items[self._order[self.index]])
            self.index += 1
        return out

    def get_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index}

    def set_state(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.index = int(state["index"])
        self._order = self._shuffled(self.epoch)
