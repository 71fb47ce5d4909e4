"""Markdown helpers that every section of results.md uses."""

import math


def fmt(value, spec):
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def markdown_table(header, body_rows):
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *body_rows]


def geomean_summary(rows, vs):
    """(geometric mean, min, count) of the rows' speedups against vs, or None if none has one."""
    values = [v for v in (getattr(r, f"speedup_vs_{vs}") for r in rows) if not math.isnan(v)]
    if not values:
        return None
    return math.exp(sum(map(math.log, values)) / len(values)), min(values), len(values)
