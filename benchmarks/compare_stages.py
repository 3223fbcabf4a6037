"""Two models' results from ``bench_cnn_sphere.py``, group by group and field by field: does the new one ship?

    python benchmarks/compare_stages.py \
        --base benchmarks/results/cnn_sphere.json benchmarks/results/cnn_robustness.json \
        --new benchmarks/results/best-cpu/stage34-test.json benchmarks/results/best-cpu/stage34-robustness.json \
        -o benchmarks/results/best-cpu/stage34-compare.md

Why: every training stage of ``sphere-1deg`` is shipped or kept by a rule fixed before its result (since the
thirty-second: at least 7 of the 9 group metrics ε_Q9999, ε_max, ε_mean on the test, stress and held-out fields
must fall, with TTA). A field's ε_max is one cell and scatters by 5–10 % between two stages, so beside the group
means this prints the paired view: the geometric mean over fields of new/base (± its standard error) and how many
fields fell. Groups come from the data set names: ``ood-*`` stress, ``ho-*`` held-out, ``va-*`` validation, the
rest test. Results written before ``bench_cnn_sphere.py`` stored each field (no ``fields`` list) still give
group means, weighted by the other side's field counts per set, but no paired columns.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

METRICS = ("q9999", "max", "mean")
LABELS = {"q9999": "ε_Q9999", "max": "ε_max", "mean": "ε_mean"}
GROUP_PREFIXES = (("stress", "ood-"), ("held-out", "ho-"), ("validation", "va-"))
GROUP_ORDER = ("test", "validation", "stress", "held-out")


def group_of(set_name: str) -> str:
    """The group a data set belongs to, by the name's prefix."""
    return next((g for g, p in GROUP_PREFIXES if set_name.startswith(p)), "test")


def load_results(paths: list[str]) -> list[dict]:
    """The JSON files ``bench_cnn_sphere.py`` wrote, with a clear error for a missing or foreign file."""
    out = []
    for p in paths:
        try:
            d = json.loads(Path(p).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{p}: no such results file (bench_cnn_sphere.py writes OUTPUT.json)") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not a JSON file ({e})") from None
        if not isinstance(d, dict) or "per_dir" not in d:
            raise ValueError(f"{p}: not a bench_cnn_sphere.py results file (no 'per_dir')")
        out.append(d)
    return out


def field_table(results: list[dict], row: str) -> dict[tuple[str, int], dict[str, float]] | None:
    """(set, index) → metrics of ``row`` for every field, or None when a file has no per-field records."""
    if any("fields" not in r for r in results):
        return None
    table = {}
    for r in results:
        for f in r["fields"]:
            if row not in f:
                rows = sorted(set(f) - {"set", "index", "path"})
                raise ValueError(f"the per-field records have no row {row!r} (they have {rows})")
            table[(f["set"], int(f["index"]))] = f[row]
    return table


def set_counts(fields: dict | None) -> dict[str, int]:
    """Fields per data set, from the per-field records (empty without them)."""
    return dict(Counter(s for s, _ in fields)) if fields is not None else {}


def group_means(results: list[dict], row: str, fields: dict | None, counts: dict[str, int]) -> dict[str, dict]:
    """Mean of each metric over each group's fields (from the records, or per-set means weighted by ``counts``)."""
    sums: dict[str, dict[str, float]] = {}
    n: dict[str, int] = {}
    if fields is not None:
        for (s, _), m in fields.items():
            g = group_of(s)
            n[g] = n.get(g, 0) + 1
            for k in METRICS:
                sums.setdefault(g, dict.fromkeys(METRICS, 0.0))[k] += m[k]
    else:
        for r in results:
            for s, rows in r["per_dir"].items():
                if s not in counts:
                    raise ValueError(f"set {s!r}: neither side has per-field records to weight it by; rerun "
                                     "bench_cnn_sphere.py for one of the two models")
                if row not in rows:
                    raise ValueError(f"set {s!r} has no row {row!r}")
                g, w = group_of(s), counts[s]
                n[g] = n.get(g, 0) + w
                for k in METRICS:
                    sums.setdefault(g, dict.fromkeys(METRICS, 0.0))[k] += w * rows[row][k]
    return {g: {"fields": n[g], **{k: v / n[g] for k, v in sums[g].items()}} for g in sums}


def paired(base: dict, new: dict, metric: str) -> dict[str, dict]:
    """Per group: geometric mean of new/base over the fields, its standard error (of the log) and how many fell."""
    logs: dict[str, list[float]] = {}
    for key in sorted(base):
        logs.setdefault(group_of(key[0]), []).append(float(np.log(new[key][metric] / base[key][metric])))
    out = {}
    for g, v in logs.items():
        a = np.array(v)
        se = float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")
        out[g] = {"ratio": float(np.exp(a.mean())), "se": se, "lower": int((a < 0).sum()), "n": len(a)}
    return out


def compare(base: list[dict], new: list[dict], row: str = "cnn", need: int = 7) -> dict:
    """Group means of both, their change, the paired per-field ratios where both have records, and the rule."""
    fb, fn = field_table(base, row), field_table(new, row)
    counts = set_counts(fb) or set_counts(fn)
    mb, mn = group_means(base, row, fb, counts), group_means(new, row, fn, counts)
    if set(mb) != set(mn):
        raise ValueError(f"the two sides cover different groups: {sorted(mb)} and {sorted(mn)}")
    for g in mb:
        if mb[g]["fields"] != mn[g]["fields"]:
            raise ValueError(f"group {g}: {mb[g]['fields']} fields against {mn[g]['fields']}: not the same fields")
    pairs = {}
    if fb is not None and fn is not None:
        if set(fb) != set(fn):
            odd = sorted(set(fb) ^ set(fn))[0]
            raise ValueError(f"field {odd[0]}[{odd[1]}] is on one side only: not the same fields")
        pairs = {k: paired(fb, fn, k) for k in METRICS}
    rows, fell = [], 0
    for g in sorted(mb, key=lambda g: GROUP_ORDER.index(g)):
        for k in METRICS:
            change = mn[g][k] / mb[g][k] - 1
            fell += change < 0
            p = pairs.get(k, {}).get(g)
            rows.append({"group": g, "fields": mb[g]["fields"], "metric": k, "base": mb[g][k], "new": mn[g][k],
                         "change": change, **({"paired": p} if p else {})})
    total = len(rows)
    return {"rows": rows, "fell": fell, "of": total, "need": need, "ship": fell >= need if total >= need else None}


def markdown(result: dict, base_name: str, new_name: str, row: str) -> str:
    lines = [f"`{new_name}` against `{base_name}` (row `{row}`; paired: geometric mean of new / base over the fields, "
             "± its standard error, and the fields that fell)", "",
             "| group | fields | metric | base | new | change | paired ratio | fields lower |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        p = r.get("paired")
        pr = f"{p['ratio']:.3f} ± {p['ratio'] * p['se']:.3f}" if p else "–"
        lo = f"{p['lower']}/{p['n']}" if p else "–"
        lines.append(f"| {r['group']} | {r['fields']} | {LABELS[r['metric']]} | {r['base']:.4g} | {r['new']:.4g} | "
                     f"{100 * r['change']:+.1f} % | {pr} | {lo} |")
    lines.append("")
    if result["ship"] is None:  # fewer groups than the rule counts (e.g. the validation fields alone)
        lines.append(f"{result['fell']} of {result['of']} group metrics fell.")
    else:
        verdict = "ship" if result["ship"] else "keep the base"
        lines.append(f"{result['fell']} of {result['of']} group metrics fell (rule: at least {result['need']}): "
                     f"**{verdict}**.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", nargs="+", required=True, help="the shipped model's results JSON files")
    ap.add_argument("--new", nargs="+", required=True, help="the candidate's results JSON files (the same sets)")
    ap.add_argument("--row", default="cnn", choices=("cnn", "cnn, no TTA"), help="which CNN row (default: TTA)")
    ap.add_argument("--need", type=int, default=7, help="group metrics that must fall to ship (default: %(default)s)")
    ap.add_argument("-o", "--output", help="also write the table to this Markdown file")
    a = ap.parse_args()
    try:
        base, new = load_results(a.base), load_results(a.new)
        result = compare(base, new, a.row, a.need)
    except (OSError, ValueError) as e:
        ap.error(str(e))
    text = markdown(result, base[0].get("model", a.base[0]), new[0].get("model", a.new[0]), a.row)
    print(text, end="")
    if a.output:
        Path(a.output).write_text(text)


if __name__ == "__main__":
    main()
