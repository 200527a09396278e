"""The calculator tool: safe arithmetic over an AST whitelist, never `eval`."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 100
MAX_MAGNITUDE = 1e100


class CalculatorError(ValueError):
    """The expression is not allowed or cannot be computed; the message says why."""


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_FUNCS: dict[str, tuple[Callable[..., Any], int, int]] = {  # name: (fn, min args, max args)
    "sqrt": (math.sqrt, 1, 1),
    "abs": (abs, 1, 1),
    "round": (round, 1, 2),
    "min": (min, 2, 10),
    "max": (max, 2, 10),
}
_CONSTS = {"pi": math.pi, "e": math.e}


def calculate(expression: str) -> int | float:
    """Evaluate arithmetic safely: numbers, + - * / // % **, unary +/-, parentheses, pi, e and
    sqrt/abs/round/min/max. Never `eval`. Raises `CalculatorError` beyond 200 characters, for an
    exponent above 100 in magnitude, or for any intermediate result above 1e100 in magnitude.
    Integral results come back as `int`; others keep 10 significant digits.
    """
    if not isinstance(expression, str):
        raise CalculatorError("the expression must be a string")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise CalculatorError(f"not an arithmetic expression: {expression!r}") from err
    return tidy_number(_eval(tree.body))


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculatorError(f"only numbers are allowed, not {node.value!r}")
        return _bounded(node.value)
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        fn = _BINOPS.get(type(node.op))
        if fn is None:
            raise CalculatorError(f"operator {type(node.op).__name__} is not allowed")
        if right == 0 and isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod):
            raise CalculatorError("division by zero")
        return _bounded(fn(left, right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _eval(node.operand)
        return value if isinstance(node.op, ast.UAdd) else -value
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
        fn, lo, hi = _FUNCS[node.func.id]
        if node.keywords or not lo <= len(node.args) <= hi:
            raise CalculatorError(f"{node.func.id} takes {lo}..{hi} positional arguments")
        args = [_eval(a) for a in node.args]
        if node.func.id == "sqrt" and args[0] < 0:
            raise CalculatorError("sqrt of a negative number")
        if (
            node.func.id == "round"
            and len(args) == 2
            and not (isinstance(args[1], int) and 0 <= args[1] <= 15)
        ):
            raise CalculatorError("round digits must be an integer in 0..15")
        return _bounded(fn(*args))
    what = {ast.Name: "names", ast.Attribute: "attribute access", ast.Call: "this function call"}
    raise CalculatorError(f"{what.get(type(node), type(node).__name__)} not allowed in the calculator")


def _power(base: int | float, exp: int | float) -> int | float:
    if abs(exp) > MAX_EXPONENT:
        raise CalculatorError(f"exponent {exp} is larger than {MAX_EXPONENT}")
    if base == 0 and exp < 0:
        raise CalculatorError("division by zero")
    if base != 0 and exp > 0 and exp * math.log10(abs(base)) > math.log10(MAX_MAGNITUDE):
        raise CalculatorError(f"result is larger than {MAX_MAGNITUDE:g}")
    result = base**exp
    if isinstance(result, complex):
        raise CalculatorError("fractional power of a negative number")
    return _bounded(result)


def _bounded(value: int | float) -> int | float:
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError(f"result is larger than {MAX_MAGNITUDE:g}")
    return value


def tidy_number(value: int | float) -> int | float:
    """10 significant digits, and an `int` when integral, so answers read like a person wrote them."""
    if isinstance(value, int):
        return value
    value = float(f"{value:.10g}")
    return int(value) if value.is_integer() and abs(value) < 1e15 else value
