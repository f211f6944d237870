"""Write the label-noise table and the landing-page summary from raw results.

``docs/scripts/label_noise_seeds.py`` runs the label-noise experiment over
three seeds and writes its raw output to
``benchmarks/results/label_noise_seeds.txt``. At every build this extension
turns that file into two reStructuredText fragments under ``_generated/``,
included by ``user_guide/what_is_clusterfit.rst`` and ``index.rst``, so no
number of the table or the summary is typed by hand. The gallery example
``plot_label_noise.py`` checks that its own seed-0 run matches the file.
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.dirname(HERE)
OUT = os.path.join(DOCS, "_generated")
HEADLINE_P = 0.75  # the paper's largest noise level
RANDOM_P = 0.9  # with 10 classes: every label uniform, independent of the image


def _label(p):
    text = f"{100 * p:.0f}%"
    if p == RANDOM_P:
        text += " (labels independent of the images)"
    return text


def _cell(values, signed=False):
    fmt = "+.1f" if signed else ".1f"
    sep = " to " if signed else "-"
    return f"{values.mean():{fmt}} ({values.min():{fmt}}{sep}{values.max():{fmt}})"


def noise_table(rows):
    seeds = sorted({r["seed"] for r in rows})
    ps = sorted({r["p"] for r in rows})
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 26 18 18 18 20",
        "",
        "   * - wrong labels",
        "     - teacher N_pre",
        "     - student N_cf",
        "     - gain (points)",
        "     - teacher agrees with the clean labels (%)",
    ]
    for p in ps:
        runs = [r for r in rows if r["p"] == p]
        pre = 100 * np.array([r["n_pre"] for r in runs])
        cf = 100 * np.array([r["n_cf"] for r in runs])
        agree = 100 * np.array([r["teacher_fit_clean"] for r in runs])
        lines += [
            f"   * - {_label(p)}",
            f"     - {_cell(pre)}",
            f"     - {_cell(cf)}",
            f"     - {_cell(cf - pre, signed=True)}",
            f"     - {_cell(agree)}",
        ]
    lines += ["", f".. |noise_seeds| replace:: {', '.join(map(str, seeds))}", ""]
    return "\n".join(lines)


def landing_summary(rows):
    def gains(p):
        runs = [r for r in rows if r["p"] == p]
        return 100 * np.array([r["n_cf"] - r["n_pre"] for r in runs]), len(runs)

    clean, n = gains(0.0)
    noisy, _ = gains(HEADLINE_P)

    def phrase(g, whom):
        if abs(g.mean()) < 0.05:
            text = f"level with {whom}"
        else:
            side = "above" if g.mean() > 0 else "below"
            text = f"{abs(g.mean()):.1f} points {side} {whom}"
        return f"{text} (per seed: {g.min():+.1f} to {g.max():+.1f})"

    return (
        f"Averaged over {n} seeds, the student's linear-probe accuracy is "
        f"{phrase(clean, 'its teacher')} when the teacher's labels are clean, "
        f"and {phrase(noisy, 'it')} when {100 * HEADLINE_P:.0f}% of them are "
        "wrong.\n"
    )


def check_claims(rows):
    """The statements of what_is_clusterfit.rst about the table, checked.

    A new raw file that contradicts the prose fails the build, naming the
    sentence to rewrite.
    """
    def mean(p, key):
        return np.mean([r[key] for r in rows if r["p"] == p])

    problems = []
    agree = mean(HEADLINE_P, "teacher_fit_clean")
    if not 0.4 <= agree <= 0.65:
        problems.append(f"at p={HEADLINE_P} the teacher agrees with the clean labels on "
                        f"{agree:.0%} of its images, not 'about half'")
    if mean(RANDOM_P, "teacher_fit_clean") > 0.2:
        problems.append(f"at p={RANDOM_P} the teacher's agreement is not at chance")
    gain = {p: 100 * (mean(p, "n_cf") - mean(p, "n_pre")) for p in {r["p"] for r in rows}}
    if not -1.5 <= gain[0.0] <= 0.5:
        problems.append(f"with clean labels the student is {gain[0.0]:+.1f} points from "
                        "its teacher, not 'within about a point, below it'")
    if not 2.0 <= gain[HEADLINE_P] <= 6.0:
        problems.append(f"at p={HEADLINE_P} the mean gain is {gain[HEADLINE_P]:+.1f} "
                        "points, not 'a few points'")
    if not gain[0.0] < gain.get(0.5, np.inf) < gain[HEADLINE_P] < gain[RANDOM_P]:
        problems.append("the mean gain does not grow with the noise: "
                        + ", ".join(f"p={p}: {g:+.1f}" for p, g in sorted(gain.items())))
    if problems:
        from sphinx.errors import ExtensionError

        raise ExtensionError(
            "benchmarks/results/label_noise_seeds.txt contradicts "
            "docs/user_guide/what_is_clusterfit.rst: " + "; ".join(problems)
        )


def write_pages(app=None):
    sys.path.insert(0, DOCS)
    from scripts.label_noise_seeds import RESULTS, read_results

    rows = read_results(RESULTS)
    check_claims(rows)
    os.makedirs(OUT, exist_ok=True)
    for name, text in [("noise_table.rst", noise_table(rows)),
                       ("landing_summary.rst", landing_summary(rows))]:
        path = os.path.join(OUT, name)
        old = open(path).read() if os.path.exists(path) else None
        if text != old:  # unchanged files keep their time stamp: no needless rebuild
            with open(path, "w") as file:
                file.write(text)


def setup(app):
    app.connect("builder-inited", write_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
