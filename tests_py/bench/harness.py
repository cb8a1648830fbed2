"""Interleaved benchmarking: run each case for every implementation in
alternation (A, B, A, B, ...) within one run, so that the drift of a shared
machine hits all implementations alike, and report medians and ratios."""

import statistics
import time


def interleave(cases, impls, rounds=5, higher_is_better=True, unit=""):
    """cases: list of (name, fn(impl) -> value). impls: list of names; the
    first is the baseline. Prints one line per case; returns
    {case: {impl: [values]}}."""
    results = {}
    for name, fn in cases:
        values = {impl: [] for impl in impls}
        for r in range(rounds):
            order = impls if r % 2 == 0 else list(reversed(impls))
            for impl in order:
                values[impl].append(fn(impl))
        results[name] = values
        base = statistics.median(values[impls[0]])
        cells = []
        for impl in impls:
            med = statistics.median(values[impl])
            best = max(values[impl]) if higher_is_better else min(values[impl])
            cell = "%s %s (best %s)" % (impl, fmt(med), fmt(best))
            if impl != impls[0]:
                ratio = med / base if higher_is_better else base / med
                cell += " x%.2f" % ratio
            cells.append(cell)
        print("%-34s %s %s" % (name, unit, " | ".join(cells)), flush=True)
    return results


def fmt(v):
    if v >= 1e9:
        return "%.2fG" % (v / 1e9)
    if v >= 1e6:
        return "%.2fM" % (v / 1e6)
    if v >= 1e3:
        return "%.1fk" % (v / 1e3)
    if v >= 1:
        return "%.2f" % v
    return "%.3g" % v


def timed(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0
