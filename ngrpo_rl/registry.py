"""A name -> component registry, the one mechanism behind every pluggable piece.

Modelled on the string-keyed registries of verl's ``core_algos.py``: components are registered with
a decorator, a name can be registered only once, and asking for an unknown name fails with the list
of valid ones, so a typo in a config is caught with a message that says how to fix it.

A component declares, when it registers, which config fields feed its keyword arguments
(``params={"epsilon": "advantage_epsilon"}``) and its own parameters that are no field
(``params={"alpha": Param(float, 0.5, "...")}``, set through the ``component_kwargs`` field), plus
any traits the pipeline reads (``min_group_size=2``, ``drop_zero_advantage_samples=True``).
Undeclared, a component's parameters are its signature's keywords named like config fields.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from ngrpo_rl.settings import FIELD_NAMES, REQUIRED, Param, matches_type

T = TypeVar("T")

# Where a component keyword's value comes from: a config field's name, or the component's own Param.
ParamSource = str | Param


class UnknownNameError(KeyError, ValueError):
    """An unknown component name; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would print the message inside quotes
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to components of one kind (``kind`` appears in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._params: dict[str, dict[str, ParamSource]] = {}
        self._metadata: dict[str, dict[str, Any]] = {}

    def register(
        self, name: str, params: Mapping[str, ParamSource] | None = None, **metadata: Any
    ) -> Callable[[T], T]:
        """Decorator: ``@registry.register("my_name")`` adds the decorated object under ``name``.

        ``params`` maps each keyword the component takes from the config to its source: a config
        field's name (``{"epsilon": "advantage_epsilon"}``) or a ``Param`` of its own, whose value
        comes from the ``component_kwargs`` field. Without ``params``, the component receives the
        keywords of its signature that are named like config fields. ``metadata`` holds traits the
        pipeline reads (e.g. ``min_group_size=2``). Raises ``ValueError`` if ``name`` is taken, so
        two components never silently shadow each other, or if ``params`` names an unknown field or
        a keyword the component does not accept.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
        declared = None if params is None else self._checked_params(name, params)

        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered; pick another name "
                    f"(registered: {', '.join(self.available())})"
                )
            if declared is not None:
                _check_accepts(self.kind, name, item, declared)
                self._params[name] = declared
            self._items[name] = item
            self._metadata[name] = dict(metadata)
            return item

        return decorator

    def _checked_params(self, name: str, params: Mapping[str, ParamSource]) -> dict[str, ParamSource]:
        checked: dict[str, ParamSource] = {}
        for keyword, source in params.items():
            where = f"{self.kind} {name!r}: params[{keyword!r}]"
            if isinstance(source, str):
                if source not in FIELD_NAMES:
                    close = difflib.get_close_matches(source, sorted(FIELD_NAMES), n=3)
                    hint = f"; did you mean {', '.join(close)}?" if close else ""
                    raise ValueError(
                        f"{where} names {source!r}, which is no config field{hint} (declare a "
                        f"parameter of your own with ngrpo_rl.settings.Param)"
                    )
            elif isinstance(source, Param):
                if source.default is not REQUIRED and not matches_type(source.type, source.default):
                    raise ValueError(f"{where}: default {source.default!r} is not of type {source.type}")
            else:
                raise TypeError(f"{where} must be a config field name or a Param, got {source!r}")
            checked[str(keyword)] = source
        return checked

    def params(self, name: str) -> dict[str, ParamSource]:
        """Keyword -> source (a config field's name or a ``Param``) of component ``name``: as
        declared at registration, else its signature's keywords that are named like config fields."""
        item = self.get(name)
        if name in self._params:
            return dict(self._params[name])
        try:
            parameters = inspect.signature(item).parameters.values()
        except (TypeError, ValueError):
            return {}
        return {
            p.name: p.name
            for p in parameters
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            and p.name in FIELD_NAMES
        }

    def metadata(self, name: str) -> dict[str, Any]:
        """The traits component ``name`` declared at registration (e.g. ``min_group_size``)."""
        self.get(name)
        return dict(self._metadata.get(name, {}))

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


def _check_accepts(kind: str, name: str, item: Any, params: Mapping[str, ParamSource]) -> None:
    """A declared keyword must be one the component accepts (anything, with ``**kwargs``)."""
    try:
        signature = inspect.signature(item)
    except (TypeError, ValueError):
        return
    parameters = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    accepted = {
        p.name for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    missing = sorted(set(params) - accepted)
    if missing:
        raise ValueError(
            f"{kind} {name!r} declares params {missing} that its signature does not accept; it "
            f"accepts {', '.join(sorted(accepted)) or 'no keywords'}"
        )


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
