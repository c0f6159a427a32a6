"""A name -> component registry, the one mechanism behind every pluggable piece.

Modelled on the string-keyed registries of verl's ``core_algos.py``: components are registered with
a decorator, a name can be registered only once, and asking for an unknown name fails with the list
of valid ones, so a typo in a config is caught with a message that says how to fix it.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

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


def keyword_parameters(fn: Callable[..., Any], skip: int) -> tuple[set[str], bool]:
    """The names ``fn`` accepts as keywords after its first ``skip`` (tensor) arguments, and
    whether it also takes ``**kwargs``."""
    parameters = list(inspect.signature(fn).parameters.values())
    later = parameters[skip:]
    names = {
        p.name
        for p in later
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in later)


def bind_keywords(fn: Callable[..., Any], params: Mapping[str, Any], skip: int) -> dict[str, Any]:
    """The entries of ``params`` (e.g. a whole config) that ``fn`` accepts as keywords after its
    first ``skip`` arguments; a ``**kwargs`` component gets every entry but those arguments."""
    names, takes_any = keyword_parameters(fn, skip)
    leading = {p.name for p in list(inspect.signature(fn).parameters.values())[:skip]}
    return {k: v for k, v in params.items() if k not in leading and (takes_any or k in names)}
