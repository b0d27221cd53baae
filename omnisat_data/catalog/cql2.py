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
