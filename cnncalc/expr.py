"""`$arg` substitution and a tiny integer-arithmetic parser for block arguments (never eval).

Grammar: expr := term (('+' | '-') term)* ; term := unary (('*' | '//' | '%') unary)* ;
unary := '-' unary | atom ; atom := INT | '$' NAME | '(' expr ')'.
"""
from __future__ import annotations

import re

from .errors import brief, clip
from .source import LARGEST

MAX_LENGTH = 200
_TOKEN = re.compile(r"\s*(?:(\d+)|\$([A-Za-z_][A-Za-z0-9_]*)|(//|[-+*%()]))")


class ExprError(ValueError):
    """A bad expression; the message says what and the caller adds where."""


def substitute(text: str, env: dict):
    """The value of a string holding `$args`: `$name` alone gives the argument's value as it is
    (any type); anything else must be integer arithmetic.

    >>> substitute("$width * 4 // 2", {"width": 64})
    128
    >>> substitute("$act", {"act": "relu"})
    'relu'
    """
    whole = re.fullmatch(r"\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*", text)
    if whole:
        return _lookup(whole.group(1), env)
    return evaluate(text, env)


def evaluate(text: str, env: dict) -> int:
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression {clip(text, 40)} is longer than {MAX_LENGTH} characters")
    tokens = _tokens(text)
    value, pos = _expr(tokens, 0, env, 0)
    if pos != len(tokens):
        raise ExprError(f"unexpected '{tokens[pos][1]}' in {brief(text)}")
    return value


def _tokens(text: str) -> list[tuple[str, object]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ExprError(f"{brief(text[pos:].strip(), 20)} is not allowed in {brief(text)}: only whole numbers, "
                            "$args, + - * // % and parentheses")
        number, name, op = m.groups()
        if number and len(number) > 19:
            raise ExprError(f"the number {clip(number, 25)} is too large (at most 2^63 - 1)")
        tokens.append(("int", int(number)) if number else ("arg", name) if name else ("op", op))
        pos = m.end()
    return tokens


def _lookup(name: str, env: dict):
    if name not in env:
        known = ", ".join(f"${k}" for k in env) or "none"
        raise ExprError(f"unknown argument ${name} (defined: {clip(known, 120)})")
    return env[name]


def _expr(tokens, pos, env, depth):
    value, pos = _term(tokens, pos, env, depth)
    while pos < len(tokens) and tokens[pos] in (("op", "+"), ("op", "-")):
        right, next_pos = _term(tokens, pos + 1, env, depth)
        value = _bounded(value + right if tokens[pos][1] == "+" else value - right)
        pos = next_pos
    return value, pos


def _term(tokens, pos, env, depth):
    value, pos = _unary(tokens, pos, env, depth)
    while pos < len(tokens) and tokens[pos] in (("op", "*"), ("op", "//"), ("op", "%")):
        op = tokens[pos][1]
        right, pos = _unary(tokens, pos + 1, env, depth)
        if op != "*" and right == 0:
            raise ExprError("division by zero")
        value = _bounded(value * right if op == "*" else value // right if op == "//" else value % right)
    return value, pos


def _unary(tokens, pos, env, depth):
    if depth > 50:
        raise ExprError("expression is nested too deeply")
    if pos >= len(tokens):
        raise ExprError("expression ends too early")
    kind, value = tokens[pos]
    if (kind, value) == ("op", "-"):
        operand, pos = _unary(tokens, pos + 1, env, depth + 1)
        return -operand, pos
    if kind == "int":
        return value, pos + 1
    if kind == "arg":
        arg = _lookup(value, env)
        if isinstance(arg, bool) or not isinstance(arg, int):
            raise ExprError(f"${value} is {brief(arg)}, but arithmetic needs a whole number")
        return _bounded(arg), pos + 1
    if value == "(":
        inner, pos = _expr(tokens, pos + 1, env, depth + 1)
        if pos >= len(tokens) or tokens[pos] != ("op", ")"):
            raise ExprError("missing ')'")
        return inner, pos + 1
    raise ExprError(f"unexpected '{value}'")


def _bounded(value: int) -> int:
    """Every intermediate stays within PyTorch's 64-bit sizes, so no expression can build a huge number."""
    if abs(value) > LARGEST:
        raise ExprError(f"{brief(value, 30)} is too large (whole numbers in a spec are at most 2^63 - 1)")
    return value
