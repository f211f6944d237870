"""Tables of ``web_data_study.py``'s runs: ``python benchmarks/web_data_study.py --report``.

Reads ``webdata_structured.csv`` and ``webdata_longtail.csv`` and writes
``webdata_report.txt`` beside them (reStructuredText tables, pasted into
docs/paper_results.rst). Every cell is a mean +- std over the seeds present;
the number of seeds is in the table, so a grid cut short says so.
"""

import csv
import os

import numpy as np

from noisy_teacher_study import DATASETS

STRUCTURED = ["N_pre", "N_cf", "Distill", "N_pre 2x"]
LONGTAIL = ["N_pre", "N_cf", "N_cf balanced", "N_cf curated"]


def read(path):
    """The CSV's rows, the first of each run only: two processes resuming the
    same grid can both finish a run that neither had seen finished."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows, seen = [], set()
        for row in csv.DictReader(f):
            key = tuple(row[k] for k in ("plan", "dataset", "kind", "p", "seed", "network"))
            if key not in seen:
                seen.add(key)
                rows.append(row)
        return rows


def rst_table(lines):
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(lines[0]))]
    rule = "  ".join("=" * w for w in widths)
    body = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join([rule, body[0], rule, *body[1:], rule])


def cell(values, reference=None):
    values = np.asarray(values, dtype=float)
    text = f"{values.mean():.3f}"
    if len(values) > 1:
        text += f" +- {values.std(ddof=1):.3f}"
    if reference is not None:
        text += f" ({values.mean() - np.mean(reference):+.3f})"
    return text


def by(rows, *fields):
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[f] for f in fields), []).append(r)
    return groups


def complete(rows, networks):
    """All rows of the teachers whose ``networks`` all finished (paired comparisons)."""
    teachers = by(rows, "dataset", "kind", "p", "seed")
    keep = []
    for group in teachers.values():
        if {r["network"] for r in group} >= set(networks):
            keep += group
    return keep


def structured_tables(rows, probe):
    rows = complete(rows, ["N_pre", "N_cf"])  # the baselines where they ran
    lines = [["dataset", "p", "noise", "seeds"] + STRUCTURED + ["N_cf > N_pre"]]
    cells = by(rows, "dataset", "p", "kind")
    for dataset, p, kind in sorted(cells, key=lambda c: (DATASETS.index(c[0]), c[1],
                                                         c[2] != "uniform")):
        group = by(cells[(dataset, p, kind)], "network")
        pre = [float(r[probe]) for r in group[("N_pre",)]]
        cf = [float(r[probe]) for r in group[("N_cf",)]]
        line = [dataset, p, kind, str(len(pre))]
        for network in STRUCTURED:
            values = [float(r[probe]) for r in group.get((network,), [])]
            if not values:
                line.append("-")
                continue
            seeds = "" if len(values) == len(pre) else f" [{len(values)} seeds]"
            line.append(cell(values, None if network == "N_pre" else pre) + seeds)
        line.append(f"{sum(c > a for a, c in zip(pre, cf))}/{len(pre)}")
        lines.append(line)
    return rst_table(lines) if len(lines) > 1 else "(no complete cell yet)"


def noise_fit_table(structured, longtail):
    """How often noise_fit's likely_to_help matches the sign of N_cf - N_pre (linear)."""
    lines = [["teachers", "n", "likely_to_help said yes", "N_cf > N_pre", "rule right"]]
    groups = {}
    for plan_rows, name in ((structured, None), (longtail, "long tail (Zipf, uniform p=0.5)")):
        teachers = by(plan_rows, "dataset", "kind", "p", "seed")
        for key, group in teachers.items():
            nets = {r["network"]: r for r in group}
            if "N_pre" not in nets or "N_cf" not in nets:
                continue
            label = name or f"{key[1]} noise"
            helped = float(nets["N_cf"]["linear"]) > float(nets["N_pre"]["linear"])
            said = nets["N_pre"]["likely_to_help"] in ("1", "True", "1.0")
            groups.setdefault(label, []).append((said, helped))
    total = []
    for label in sorted(groups):
        pairs = groups[label]
        total += pairs
        lines.append([label, str(len(pairs)), str(sum(s for s, _ in pairs)),
                      str(sum(h for _, h in pairs)), f"{sum(s == h for s, h in pairs)}/{len(pairs)}"])
    if total:
        lines.append(["all", str(len(total)), str(sum(s for s, _ in total)),
                      str(sum(h for _, h in total)), f"{sum(s == h for s, h in total)}/{len(total)}"])
    return rst_table(lines) if len(lines) > 1 else "(no teacher yet)"


def longtail_table(rows, probe):
    rows = complete(rows, LONGTAIL)
    lines = [["profile", "seeds", "network", "all", "head 3", "middle 4", "tail 3",
              "curated rows", "curation s"]]
    cells = by(rows, "kind")
    for (kind,) in sorted(cells, key=lambda k: float(k[0][4:])):
        group = by(cells[(kind,)], "network")
        pre = group[("N_pre",)]
        for network in LONGTAIL:
            rs = group[(network,)]
            line = [kind.replace("zipf", "Zipf ") + ":1", str(len(rs)), network]
            for part in ("", "_head", "_middle", "_tail"):
                values = [float(r[probe + part]) for r in rs]
                reference = None if network == "N_pre" else [float(r[probe + part]) for r in pre]
                line.append(cell(values, reference))
            if network == "N_cf curated":
                line += [f"{np.mean([float(r['curated_rows']) for r in rs]):.0f} of "
                         f"{np.mean([float(r['n_train']) for r in rs]):.0f}",
                         f"{np.mean([float(r['curation_s']) for r in rs]):.2f}"]
            else:
                line += ["-", "-"]
            lines.append(line)
    return rst_table(lines) if len(lines) > 1 else "(no complete cell yet)"


def runs_line(rows):
    if not rows:
        return "no runs"
    loads = [float(r["load1"]) for r in rows]
    cpu = sum(float(r["cpu_s"]) for r in rows)
    return (f"{len(rows)} runs, {cpu / 3600:.2f} CPU-hours, load average {min(loads):.1f} "
            f"to {max(loads):.1f}, commits {sorted({r['commit'] for r in rows})}")


def report(out_dir):
    structured = read(os.path.join(out_dir, "webdata_structured.csv"))
    longtail = read(os.path.join(out_dir, "webdata_longtail.csv"))
    parts = [
        "Structured vs uniform label noise: " + runs_line(structured),
        "Linear probe (clean held-out labels); (+x): difference from N_pre",
        structured_tables(structured, "linear"),
        "kNN probe (k=20, T=0.07)",
        structured_tables(structured, "knn"),
        "Long tails: " + runs_line(longtail),
        "Linear probe per third of the classes (ranked by training frequency)",
        longtail_table(longtail, "linear"),
        "kNN probe per third",
        longtail_table(longtail, "knn"),
        "noise_fit's likely_to_help against the sign of N_cf - N_pre (linear probe)",
        noise_fit_table(structured, longtail),
    ]
    text = "\n\n".join(parts)
    with open(os.path.join(out_dir, "webdata_report.txt"), "w") as f:
        f.write("command: python benchmarks/web_data_study.py --report\n\n" + text + "\n")
    print(text)
