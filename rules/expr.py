"""A small, safe expression language for rule conditions kept as data.

Conditions are Python expression syntax restricted to comparisons, boolean logic, arithmetic,
``in`` over literal tuples, conditional expressions and a few pure functions. They are parsed,
checked against a whitelist of node types and names, and compiled — all of one device kind's
conditions into a single function — so a catalog written by a regulator cannot run code and
evaluation stays fast (one Python call per message for all rules of a kind).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterable
from types import CodeType
from typing import Any

_ALLOWED_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod, ast.Compare, ast.Eq, ast.NotEq,
    ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Is, ast.IsNot, ast.IfExp, ast.Name,
    ast.Load, ast.Constant, ast.Tuple, ast.Call,
)  # fmt: skip
FUNCTIONS: dict[str, Callable[..., Any]] = {"abs": abs, "min": min, "max": max, "round": round}


# Ordering comparisons in rules are made on values rounded to this many decimals: far finer than
# any sensor (0.001 MPa, 0.01 m/s) and far coarser than binary noise, so 0.9 × 1.6 is 1.44 and
# a reading of exactly 1.44 meets a "≥ 90 % of 1.6" threshold, as the docs say it does.
RESOLUTION_DIGITS = 9
_ORDER = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


class ExprError(ValueError):
    """An expression is malformed or uses something outside the language."""


def parse(source: str, names: Iterable[str], *, what: str) -> ast.expr:
    """Parse and check one expression; ``names`` are the variables it may use."""
    allowed = set(names)
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as e:
        raise ExprError(f"{what}: cannot parse {source!r}: {e.msg}") from e
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ExprError(f"{what}: {type(node).__name__} is not allowed in {source!r}")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and not node.keywords
        ):
            raise ExprError(f"{what}: only {', '.join(FUNCTIONS)} may be called in {source!r}")
        if isinstance(node, ast.Name) and node.id not in allowed and node.id not in FUNCTIONS:
            raise ExprError(f"{what}: unknown name {node.id!r} in {source!r} (known: {', '.join(sorted(allowed))})")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str | bool | type(None)):
            raise ExprError(f"{what}: constant {node.value!r} is not allowed")
    return tree.body


def exact(tree: ast.expr) -> ast.expr:
    """``tree`` with each ordering comparison made at :data:`RESOLUTION_DIGITS` decimals.

    Only ``<``, ``<=``, ``>``, ``>=`` chains change (equality and ``in`` also apply to strings);
    constants are rounded here once, everything else by a ``round`` call at evaluation.
    """

    def rounded(node: ast.expr) -> ast.expr:
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, float):
                return ast.copy_location(ast.Constant(round(v, RESOLUTION_DIGITS)), node)
            return node
        digits = ast.Constant(RESOLUTION_DIGITS)
        return ast.copy_location(ast.Call(ast.Name("round", ast.Load()), [node, digits], []), node)

    class Exact(ast.NodeTransformer):
        def visit_Compare(self, node: ast.Compare) -> ast.AST:
            self.generic_visit(node)
            if not all(isinstance(op, _ORDER) for op in node.ops):
                return node
            return ast.copy_location(
                ast.Compare(rounded(node.left), node.ops, [rounded(c) for c in node.comparators]), node
            )

    return ast.fix_missing_locations(Exact().visit(tree))


def exceeds(value: float, limit: float) -> bool:
    """``value > limit`` at :data:`RESOLUTION_DIGITS` decimals (for code outside the catalog)."""
    return round(value, RESOLUTION_DIGITS) > round(limit, RESOLUTION_DIGITS)


def names_in(tree: ast.expr) -> set[str]:
    """Variables an expression reads."""
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in FUNCTIONS}


def compile_function(name: str, args: list[str], body: list[tuple[str, ast.expr]], ret: ast.expr) -> Callable[..., Any]:
    """Build ``def name(*args): v1 = e1; …; return ret`` from checked expression trees."""
    stmts: list[ast.stmt] = [
        ast.Assign(targets=[ast.Name(var, ast.Store())], value=expr, lineno=0) for var, expr in body
    ]
    stmts.append(ast.Return(ret))
    fn = ast.FunctionDef(
        name=name,
        args=ast.arguments(posonlyargs=[], args=[ast.arg(a) for a in args], kwonlyargs=[], kw_defaults=[], defaults=[]),
        body=stmts,
        decorator_list=[],
        returns=None,
    )
    if sys.version_info >= (3, 12):  # a required field from 3.12 on
        fn.type_params = []
    module = ast.Module(body=[fn], type_ignores=[])
    ast.fix_missing_locations(module)
    namespace: dict[str, Any] = {"__builtins__": {}, **FUNCTIONS}
    exec(compile(module, f"<rules:{name}>", "exec"), namespace)  # checked trees only
    return namespace[name]


def compile_expr(tree: ast.expr) -> CodeType:
    """Compile one checked expression for repeated :func:`evaluate` calls."""
    return compile(ast.fix_missing_locations(ast.Expression(tree)), "<rules>", "eval")


_GLOBALS: dict[str, Any] = {"__builtins__": {}, **FUNCTIONS}


def evaluate(code: CodeType, env: dict[str, Any]) -> Any:
    """Evaluate a compiled expression (per-device durations, alarm details)."""
    return eval(code, _GLOBALS, env)  # compiled from checked trees only
