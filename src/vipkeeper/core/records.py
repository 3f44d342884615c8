"""`record`: a frozen, keyword-only dataclass, cheaper to create at every start.

dataclasses writes each class's methods as source text and compiles them when the class is
created, which happens at every start: for a frozen class that compares by value that is six
functions, compiled per class. `record` has dataclasses compile only `__init__` and the frozen
`__setattr__` and `__delattr__`, and gives the class the `__eq__`, `__hash__` and `__repr__`
dataclasses would have generated, from one implementation here: the same fields compared,
hashed and shown (`field(compare=False, hash=..., repr=False)` are honoured), the same results,
and a method the class defines itself is kept, as dataclasses keeps it. This saves a tenth of
the instructions `vipkeeper run` executes up to the election, and of the daemon's load after it
(bench/startup.py --instructions).

`@record` means `@dataclass(frozen=True, kw_only=True)`, to mypy as well (PEP 681), so
`dataclasses.fields`, `replace` and `asdict` work on records as on any dataclass. Must never
differ from dataclasses in what a record compares, hashes or shows (tests/unit/test_records.py).
"""

from __future__ import annotations

import dataclasses
import operator
import reprlib

TYPE_CHECKING = False  # typing stays unloaded before the election (test_startup_imports)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
    Values = Callable[[object], tuple[object, ...]]
else:

    def dataclass_transform(**_options: object) -> Callable[[T], T]:
        return lambda decorated: decorated


def _values(names: tuple[str, ...]) -> Values:
    """A function from a record to the tuple of these fields' values, in this order."""
    if not names:
        return lambda _record: ()
    if len(names) == 1:
        get_one = operator.attrgetter(names[0])
        return lambda record: (get_one(record),)
    return operator.attrgetter(*names)  # a tuple for 2 or more


def _shared_methods(cls: type) -> dict[str, Any]:
    fields = dataclasses.fields(cls)
    compared = _values(tuple(f.name for f in fields if f.compare))
    hashed = _values(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))
    shown = tuple(f.name for f in fields if f.repr)

    def __eq__(self: object, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return compared(self) == compared(other)

    def __hash__(self: object) -> int:
        return hash(hashed(self))

    @reprlib.recursive_repr()
    def __repr__(self: object) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({values})"

    return {"__eq__": __eq__, "__hash__": __hash__, "__repr__": __repr__}


@dataclass_transform(
    frozen_default=True, kw_only_default=True, field_specifiers=(dataclasses.field,)
)
def record(cls: type[T]) -> type[T]:
    """Make `cls` a frozen, keyword-only dataclass (see the module's docstring)."""
    # As dataclasses decides it: a class that defines __eq__ and no __hash__ has __hash__ None.
    own_hash = cls.__dict__.get("__hash__", dataclasses.MISSING)
    keeps_hash = not (
        own_hash is dataclasses.MISSING or (own_hash is None and "__eq__" in cls.__dict__)
    )
    made = dataclasses.dataclass(cls, frozen=True, kw_only=True, eq=False, repr=False)
    for name, method in _shared_methods(made).items():
        kept = keeps_hash if name == "__hash__" else name in made.__dict__
        if not kept:
            method.__qualname__ = f"{made.__qualname__}.{name}"
            setattr(made, name, method)
    return made
