"""How the plan writes its quantities: value, a space, the unit ("9.73 GB", "5.44 s", "17.00 GFLOP/s"), sizes in
decimal units throughout (said once, :data:`SIZES`): sizes and times alike spaced, no "9.73GB" beside "5.44 s",
and the frozen cache in MB, not a lone "64 MiB" among MB and GB."""
from __future__ import annotations

__all__ = ["SIZES", "human", "seconds", "span", "size"]

# said once under the table, and so read throughout (the cluster's --memory is in GB too)
SIZES = "sizes in decimal units, 1 MB = 10^6 bytes, 1 GB = 10^9 (the cluster's --memory too)"


def human(n: float, unit: str = "") -> str:
    """``n`` with a decimal prefix: value, a space, prefix and unit ("9.73 GB", "17.00 GFLOP/s", "0 B"); a bare count
    keeps its prefix on ("422.40k"). A unit is never pasted on ("9.73GB" beside "5.44 s": SIZES)."""
    prefix, value = next(((p, n / scale) for p, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3))
                          if abs(n) >= scale), ("", n))
    if not prefix and 0 < abs(n) < 0.005:      # (a throughput of 1e-290 is not "0.00")
        digits = f"{value:.3g}"
    elif not prefix and n == int(n):
        digits = f"{value:.0f}"
    else:
        digits = f"{value:.2f}"
    return f"{digits} {prefix}{unit}" if unit else f"{digits}{prefix}"


def seconds(t: float) -> str:
    if t < 1e-3:
        return f"{t * 1e6:.1f} µs"
    if t >= 1e6:                  # (--bandwidth 1e-300's step: not 300 digits)
        return f"{t:.3g} s"
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def span(t: float) -> str:
    """A long time in the unit a reader plans by: "21.7 min", "4.58 h", "95.4 days", "1,146 days"."""
    if t < 3600:
        return f"{t / 60:.3g} min"
    if t < 48 * 3600:
        return f"{t / 3600:.3g} h"
    days = t / 86400
    return f"{days:.3g} days" if days < 1000 else f"{days:,.0f} days"


def size(n: float) -> str:
    """Bytes, 3 significant digits: "67.1 MB", "8.19 kB"."""
    return f"{n / 1e6:.3g} MB" if n >= 1e6 else f"{n / 1e3:.3g} kB"
