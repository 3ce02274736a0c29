"""Argument validation against a handler's type hints, compiled once per handler.

A handler's parameters become one pydantic ``TypeAdapter`` over a TypedDict, so a
message costs one ``validate_python`` call and no model class is built per
message. A pydantic model parameter arrives as the model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NotRequired, cast, get_type_hints

from pydantic import ConfigDict, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from .errors import ConfigurationError, InvalidArguments

_P = inspect.Parameter
_ALLOWED = (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY)


class ArgsValidator:
    """Binds positional and keyword arguments to names and validates them."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        sig = inspect.signature(fn)
        try:
            hints = get_type_hints(fn, include_extras=True)
        except Exception as exc:  # a NameError in a forward reference, typically
            raise ConfigurationError(f"task {name!r}: cannot resolve type hints: {exc}") from exc
        fields: dict[str, Any] = {}
        self.names = set(sig.parameters)
        self._positional: list[str] = []
        self._required: set[str] = set()
        for param in sig.parameters.values():
            if param.kind not in _ALLOWED:
                raise ConfigurationError(
                    f"task {name!r}: parameter {param.name!r} is {param.kind.description};"
                    " tasks take plain named parameters only"
                )
            hint = hints.get(param.name, Any)
            if param.default is _P.empty:
                self._required.add(param.name)
                fields[param.name] = hint
            else:
                fields[param.name] = NotRequired[hint]
            if param.kind is _P.POSITIONAL_OR_KEYWORD:
                self._positional.append(param.name)
        typed: Any = cast(Any, TypedDict)(f"{name}_args", fields)
        typed.__pydantic_config__ = ConfigDict(extra="forbid")
        self._adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(typed)
        self.return_hint: Any = hints.get("return", Any)
        self._result_adapter: TypeAdapter[Any] | None = None

    def result(self, value: Any) -> Any:
        """A reply's result validated against the return annotation (models rebuilt)."""
        if self._result_adapter is None:
            self._result_adapter = TypeAdapter(self.return_hint)
        try:
            return self._result_adapter.validate_python(value)
        except ValidationError as exc:
            raise InvalidArguments(
                self.name, f"result does not match the return type: {describe(exc)}"
            ) from None

    def bind(self, args: list[Any] | tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Map positional arguments onto parameter names, without validating."""
        if len(args) > len(self._positional):
            raise InvalidArguments(
                self.name,
                f"takes {len(self._positional)} positional arguments but {len(args)} were given",
            )
        bound = dict(zip(self._positional, args, strict=False))
        for key, value in kwargs.items():
            if key in bound:
                raise InvalidArguments(self.name, f"got multiple values for argument {key!r}")
            bound[key] = value
        return bound

    def validate(self, args: Any, kwargs: Any) -> dict[str, Any]:
        """Validated keyword arguments for the handler, or InvalidArguments naming the field."""
        if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
            raise InvalidArguments(self.name, "body must hold a list 'args' and an object 'kwargs'")
        bound = self.bind(args, kwargs) if args else kwargs  # validate_python copies it
        try:
            return self._adapter.validate_python(bound)
        except ValidationError as exc:
            raise InvalidArguments(self.name, describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """A one-line account of a validation error: each field and what was wrong."""
    parts = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r:.80})")
    more = exc.error_count() - len(parts)
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)
