"""`record` compares, hashes and shows exactly as `dataclass(frozen=True, kw_only=True)` does.

Each case declares the same fields twice, once as a record and once as that dataclass, and
checks equal inputs give the same answers: equality (with and without fields left out of
comparison), hash, repr, a method the class defines itself, frozen assignment and the
dataclass helpers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vipkeeper.core.records import record

Decorator = Callable[[type], type]
STANDARD: Decorator = dataclass(frozen=True, kw_only=True)


def make_plain(decorate: Decorator) -> type:
    class Plain:
        name: str
        port: int = 80
        tags: tuple[str, ...] = ()

    return decorate(Plain)


def make_with_options(decorate: Decorator) -> type:
    class Options:
        name: str
        where: str = field(default="here", compare=False)  # like every model's location
        secret: str = field(default="x", repr=False)
        counted: int = field(default=0, hash=False)
        only_hashed: int = field(default=0, compare=False, hash=True)

    return decorate(Options)


def make_empty(decorate: Decorator) -> type:
    class Empty:
        pass

    return decorate(Empty)


def make_one(decorate: Decorator) -> type:
    class One:
        value: float

    return decorate(One)


def make_child(decorate: Decorator) -> type:
    base = make_plain(decorate)

    class Child(base):  # type: ignore[valid-type, misc]
        extra: int = 1

    return decorate(Child)


def values(st_for: str) -> st.SearchStrategy[Any]:
    return {
        "name": st.sampled_from(["a", "b"]),
        "port": st.integers(0, 2),
        "tags": st.lists(st.sampled_from(["x", "y"]), max_size=2).map(tuple),
        "where": st.sampled_from(["here", "there"]),
        "secret": st.sampled_from(["x", "y"]),
        "counted": st.integers(0, 1),
        "only_hashed": st.integers(0, 1),
        "value": st.sampled_from([0.0, 1.0, float("nan")]),
        "extra": st.integers(0, 1),
    }[st_for]


MAKERS = [make_plain, make_with_options, make_empty, make_one, make_child]


def instances(maker: Callable[[Decorator], type]) -> st.SearchStrategy[dict[str, Any]]:
    names = [f.name for f in dataclasses.fields(maker(STANDARD))]
    return st.fixed_dictionaries({name: values(name) for name in names})


@pytest.mark.parametrize("maker", MAKERS, ids=lambda m: m.__name__)
@given(data=st.data())
def test_equality_hash_and_repr_are_the_dataclass_ones(
    maker: Callable[[Decorator], type], data: st.DataObject
) -> None:
    standard, ours = maker(STANDARD), maker(record)
    first = data.draw(instances(maker))
    second = data.draw(instances(maker))
    a, b = standard(**first), standard(**second)
    x, y = ours(**first), ours(**second)
    assert (x == y) is (a == b)
    assert (x != y) is (a != b)
    assert (x == x) is (a == a)  # a NaN field: identity first, as in tuple comparison
    assert hash(x) == hash(a)
    assert repr(x) == repr(a)


def test_a_record_never_equals_another_class_even_with_the_same_fields() -> None:
    for decorate in (STANDARD, record):
        server, twin = make_plain(decorate)(name="web"), make_plain(decorate)(name="web")
        assert server.__eq__(twin) is NotImplemented
        assert server != twin
        assert server != ("web", 80, ())


def test_a_record_is_frozen_keyword_only_and_a_dataclass() -> None:
    Plain = make_plain(record)
    server = Plain(name="web")
    with pytest.raises(dataclasses.FrozenInstanceError):
        server.port = 81
    with pytest.raises(TypeError):
        Plain("web")
    assert dataclasses.is_dataclass(server)
    assert dataclasses.replace(server, port=81) == Plain(name="web", port=81)
    assert dataclasses.asdict(server) == {"name": "web", "port": 80, "tags": ()}
    assert Plain.__eq__.__qualname__.endswith("Plain.__eq__")


def test_methods_the_class_defines_are_kept_as_dataclasses_keeps_them() -> None:
    def make(decorate: Decorator) -> tuple[type, type, type]:
        class OwnRepr:
            name: str

            def __repr__(self) -> str:
                return "mine"

        class OwnEq:
            name: str

            def __eq__(self, other: object) -> bool:
                return True

        class OwnHash:
            name: str

            def __hash__(self) -> int:
                return 7

        return decorate(OwnRepr), decorate(OwnEq), decorate(OwnHash)

    for standard, ours in zip(make(STANDARD), make(record), strict=True):
        a, b = standard(name="a"), standard(name="b")
        x, y = ours(name="a"), ours(name="b")
        assert repr(x) == repr(a)
        assert (x == y) is (a == b)
        assert hash(x) == hash(a)


def test_a_record_that_contains_itself_shows_dots_as_dataclasses_does() -> None:
    def make(decorate: Decorator) -> Any:
        class Node:
            children: list[Any]

        node = decorate(Node)(children=[])
        node.children.append(node)
        return node

    assert repr(make(record)) == repr(make(STANDARD))
    assert repr(make(record)).endswith(".Node(children=[...])")
