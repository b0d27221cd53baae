"""Evaluate the CQL2-JSON filters the toolkit uses against an item, for the embedded catalog.

Supported: and, or, not; =, <>, <, <=, >, >=; in; between; isNull; like; `{"property": name}`
references to item properties (and `id`, `collection`, `datetime`) and `{"timestamp": ...}` literals.
Anything else raises, so an unsupported filter never silently matches everything.
"""

from __future__ import annotations

import datetime as dt
import re

import pystac

_COMPARE = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class UnsupportedFilter(ValueError):
    pass


def _value(node, item: pystac.Item):
    if isinstance(node, dict):
        if "property" in node:
            name = node["property"]
            if name == "id":
                return item.id
            if name == "collection":
                return item.collection_id
            if name == "datetime":
                return item.datetime
            return item.properties.get(name.removeprefix("properties."))
        if "timestamp" in node:
            return dt.datetime.fromisoformat(node["timestamp"].replace("Z", "+00:00"))
        if "date" in node:
            return dt.datetime.fromisoformat(node["date"] + "T00:00:00+00:00")
        raise UnsupportedFilter(f"unsupported CQL2 expression {node}")
    return node


ARITY = {**{op: 2 for op in _COMPARE}, "not": 1, "in": 2, "isNull": 1, "like": 2}  # "between": 2 or 3


def check(expr) -> None:
    """A filter this module can evaluate, or UnsupportedFilter naming the operator or the node: recipes
    are checked when they are read, not when the first search meets the mistake."""
    if not isinstance(expr, dict) or "op" not in expr:
        raise UnsupportedFilter(f"CQL2 node {expr!r} is not an object with an 'op'")
    op, args = expr["op"], expr.get("args", [])
    if op not in ARITY and op not in ("and", "or", "between"):
        raise UnsupportedFilter(f"unsupported CQL2 operator {op!r} (supported: and, or, not, "
                                f"{', '.join(_COMPARE)}, in, between, isNull, like)")
    if not isinstance(args, list):
        raise UnsupportedFilter(f"CQL2 {op!r}: args must be a list, got {args!r}")
    counts = {"between": (2, 3)}.get(op) or ((ARITY[op],) if op in ARITY else None)
    if (counts is not None and len(args) not in counts) or (op in ("and", "or") and not args):
        wanted = " or ".join(map(str, counts)) if counts else "at least 1"
        raise UnsupportedFilter(f"CQL2 {op!r} takes {wanted} arguments, got {len(args)}")
    if op in ("and", "or", "not"):
        for a in args:
            check(a)


def evaluate(expr: dict, item: pystac.Item) -> bool:
    op, args = expr.get("op"), expr.get("args", [])
    if op == "and":
        return all(evaluate(a, item) for a in args)
    if op == "or":
        return any(evaluate(a, item) for a in args)
    if op == "not":
        return not evaluate(args[0], item)
    if op in _COMPARE:
        a, b = _value(args[0], item), _value(args[1], item)
        if a is None or b is None:
            return False
        return _COMPARE[op](a, b)
    if op == "in":
        a = _value(args[0], item)
        return a in [_value(v, item) for v in args[1]]
    if op == "between":
        a, lo, hi = (_value(v, item) for v in args[:3]) if len(args) == 3 else (_value(args[0], item), *args[1])
        return a is not None and lo <= a <= hi
    if op == "isNull":
        return _value(args[0], item) is None
    if op == "like":
        a, pattern = _value(args[0], item), args[1]
        regex = "^" + re.escape(pattern).replace("%", ".*").replace("_", ".") + "$"
        return isinstance(a, str) and re.match(regex, a) is not None
    raise UnsupportedFilter(f"unsupported CQL2 operator {op!r}")
