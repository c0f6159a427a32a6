"""A name -> component registry, the one mechanism behind every pluggable piece.

Modelled on the string-keyed registries of verl's ``core_algos.py``: components are registered with
a decorator, a name can be registered only once, and asking for an unknown name fails with the list
of valid ones, so a typo in a config is caught with a message that says how to fix it.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """An unknown component name; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would print the message inside quotes
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to components of one kind (``kind`` appears in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@registry.register("my_name")`` adds the decorated object under ``name``.

        Raises ``ValueError`` if ``name`` is taken, so two components never silently shadow each other.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")

        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered; pick another name "
                    f"(registered: {', '.join(self.available())})"
                )
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        """Returns the component registered as ``name``; ``UnknownNameError`` lists the valid names."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}"
            ) from None

    def available(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.available())

    def __len__(self) -> int:
        return len(self._items)
