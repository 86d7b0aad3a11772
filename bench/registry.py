"""Named choices, each written once: a registry maps a name to its implementation, plus facts
about it that other code needs (which unit a loss aggregation divides by, whether an advantage
estimator takes several variants). Config validation, command-line choices and error messages all
read the same registry, so adding a variant touches one module.

    ADVANTAGE_ESTIMATORS = Registry("advantage estimator")

    @ADVANTAGE_ESTIMATORS.register("grpo", variants="one")
    def grpo(rewards): ...

    ADVANTAGE_ESTIMATORS["grpo"]           # the function
    ADVANTAGE_ESTIMATORS.info("grpo")      # {"variants": "one"}
    ADVANTAGE_ESTIMATORS["ppo"]            # ValueError: unknown advantage estimator 'ppo'; valid names: ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """An ordered name -> value mapping whose lookups fail with the list of valid names."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **info: Any) -> Callable[[T], T]:
        """Decorator: register the decorated object under `name`, with facts `info`."""

        def add(obj: T) -> T:
            self.add(name, obj, **info)
            return obj

        return add

    def add(self, name: str, obj: T, **info: Any) -> None:
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._items[name] = obj
        self._info[name] = info

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(self.unknown(name)) from None

    def info(self, name: str) -> dict[str, Any]:
        self[name]  # noqa: B018 - raises the readable error for an unknown name
        return self._info[name]

    def unknown(self, name: object) -> str:
        return f"unknown {self.what} {name!r}; valid names: {', '.join(self._items)}"

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._items)})"
