"""Priority tiers: one stream per tier, read critical first."""

from __future__ import annotations

import enum

from .errors import ConfigurationError


class Priority(enum.IntEnum):
    """The four tiers. A lower value is served first."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @property
    def label(self) -> str:
        """The lower-case name used on the wire and in key names."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: Priority | int | str) -> Priority:
        """Accept a Priority, its value, or its name in any case."""
        if isinstance(value, Priority):
            return value
        if isinstance(value, int):
            try:
                return cls(value)
            except ValueError as exc:
                raise ConfigurationError(f"unknown priority {value!r}") from exc
        try:
            return cls[value.strip().upper()]
        except KeyError as exc:
            names = ", ".join(p.label for p in cls)
            raise ConfigurationError(f"unknown priority {value!r} (one of {names})") from exc


TIERS: tuple[Priority, ...] = tuple(Priority)
"""All tiers, highest first."""

BY_LABEL: dict[str, Priority] = {p.label: p for p in Priority}
