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


def chart(sections, path, title, baseline=None, log=False):
    """Writes a PNG bar chart of interleave() results to path: one group of
    bars per case, one bar per implementation, each the implementation's
    median relative to the baseline's (the first implementation unless
    baseline names another), so that longer is better whatever the case's
    unit. sections: list of (results, higher_is_better) as returned by and
    given to interleave(). log: a logarithmic axis, for ratios that span
    orders of magnitude. Returns False (and writes nothing) when
    matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names, rows = [], []
    impls = []
    for results, higher_is_better in sections:
        for name, values in results.items():
            if not impls:
                impls = list(values)
            base_impl = baseline or next(iter(values))
            base = statistics.median(values[base_impl])
            row = {}
            for impl, vals in values.items():
                med = statistics.median(vals)
                row[impl] = med / base if higher_is_better else base / med
                if impl not in impls:
                    impls.append(impl)
            names.append(name)
            rows.append(row)
    if not rows:
        return False
    height = 0.8 / len(impls)
    fig, ax = plt.subplots(figsize=(9, 0.2 * len(names) * len(impls) + 1.5))
    for k, impl in enumerate(impls):
        ys = [n - 0.4 + height * (k + 0.5) for n in range(len(names))]
        xs = [row.get(impl, 0) for row in rows]
        bars = ax.barh(ys, xs, height=height, label=impl)
        for bar, x in zip(bars, xs):
            if x:
                ax.text(x, bar.get_y() + height / 2, " x%.2f" % x, va="center", fontsize=7)
    if log:
        ax.set_xscale("log")
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("relative to %s (median; longer is better)" % (baseline or impls[0]))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
