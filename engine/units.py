"""Byte counts as people read them (the one formatter for the engine's messages and every UI)."""

from __future__ import annotations

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n: int | None) -> str:
    """`n/a`, `512 B`, `12 KiB`, `945.0 MiB`, `1.2 GiB`: whole B and KiB, one decimal above."""
    if n is None:
        return "n/a"
    sign, value = ("-" if n < 0 else ""), float(abs(n))
    shown, decimals, exponent = value, 0, 0
    for exponent in range(len(_BYTE_UNITS)):
        decimals = 0 if exponent < 2 else 1
        # Pick the unit after rounding, so 1023.99 MiB reads "1.0 GiB", not "1024.0 MiB".
        shown = round(value / 1024**exponent, decimals)
        if shown < 1024:
            break
    return f"{sign}{shown:.{decimals}f} {_BYTE_UNITS[exponent]}"
