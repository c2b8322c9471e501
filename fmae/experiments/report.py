"""The evidence's numbers and its report: per task, each arm's accuracies with their intervals
(:func:`summarise`), and ``evidence.md``, the tables of them (:func:`report_markdown`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from fmae.downstream.intervals import cluster_bootstrap, paired_bootstrap, t_interval, wilson_interval
from fmae.experiments.controls import CONTROLS
from fmae.experiments.tasks import EvidenceTask

if TYPE_CHECKING:
    from fmae.experiments.evidence import EvidenceConfig

RANDOM_INIT = "random-init"
"""The arm of the randomly initialised encoders; the other arms are masking strategies."""


def arm_label(arm: str) -> str:
    return {RANDOM_INIT: "random init (no pre-training)"}.get(arm, f"pre-trained, {arm} masking")


# --------------------------------------------------------------------------- summary


def summarise(
    task: EvidenceTask, cells: Sequence[dict[str, Any]], controls: dict[str, Any], config: EvidenceConfig
) -> dict[str, Any]:
    """Per arm: accuracies per seed, the mean with its t interval over seeds, the test-set
    interval (Wilson for one seed, cluster bootstrap for the seed mean); paired comparisons."""
    arms: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        arms.setdefault(c["arm"], []).append(c)
    return {
        "task": task.name,
        "classes": task.classes,
        "n_test": len(task.test),
        "n_clusters": len(set(task.test_groups)),
        "n_train": len(task.train),
        "chance": 1 / len(task.classes),
        "rows": [_arm_row(task, arm, members, config) for arm, members in arms.items()],
        "controls": [_control_row(task, key, controls[key], config) for key in (*CONTROLS, "majority")],
        "comparisons": _comparisons(task, arms, config),
        "facts": task.facts,
    }


def _arm_row(task: EvidenceTask, arm: str, members: list[dict[str, Any]], config: EvidenceConfig) -> dict[str, Any]:
    """One arm's accuracies over seeds, their t interval and the cluster bootstrap of their mean."""
    n = len(task.test)
    members = sorted(members, key=lambda c: c["seed"])
    accs = [m["accuracy"] for m in members]
    mean, lo, hi = t_interval(accs)
    _, blo, bhi = cluster_bootstrap(np.array([m["correct"] for m in members]), task.test_groups, config.bootstrap)
    return {
        "arm": arm,
        "label": arm_label(arm),
        "seeds": [m["seed"] for m in members],
        "accuracy": accs,
        "wilson": [list(wilson_interval(round(a * n), n)) for a in accs],
        "mean": mean,
        "t_low": lo,
        "t_high": hi,
        "boot_low": blo,
        "boot_high": bhi,
        "n": n,
        "C": [m["C"] for m in members],
        "pretrain_s": [m.get("pretrain_s", 0.0) for m in members],
        "cell_s": [m.get("cell_s", 0.0) for m in members],
        "rec_loss": [[m.get("rec_loss_first"), m.get("rec_loss_last")] for m in members],
    }


def _control_row(task: EvidenceTask, key: str, control: dict[str, Any], config: EvidenceConfig) -> dict[str, Any]:
    """A control's (or the majority class's) accuracy, its Wilson and cluster-bootstrap intervals."""
    n = len(task.test)
    _, blo, bhi = cluster_bootstrap(np.array(control["correct"]), task.test_groups, config.bootstrap)
    return {
        "arm": key,
        "accuracy": control["accuracy"],
        "wilson": list(wilson_interval(sum(control["correct"]), n)),
        "boot_low": blo,
        "boot_high": bhi,
        "n": n,
        "C": control.get("C"),
    }


def _comparisons(
    task: EvidenceTask, arms: dict[str, list[dict[str, Any]]], config: EvidenceConfig
) -> list[dict[str, Any]]:
    """Paired differences, seed by seed on the same test items: each strategy − random init, then
    each pair of strategies."""
    by_arm = {arm: {m["seed"]: m for m in members} for arm, members in arms.items()}
    pairs = [(s, RANDOM_INIT) for s in config.strategy_list()]
    strategies = config.strategy_list()
    pairs += [(a, b) for i, a in enumerate(strategies) for b in strategies[i + 1 :]]
    comparisons = []
    for a, b in pairs:
        if a not in by_arm or b not in by_arm:
            continue
        seeds = sorted(set(by_arm[a]) & set(by_arm[b]))
        diffs = [by_arm[a][s]["accuracy"] - by_arm[b][s]["accuracy"] for s in seeds]
        mean, lo, hi = t_interval(diffs)
        boot = paired_bootstrap(
            np.array([by_arm[a][s]["correct"] for s in seeds]),
            np.array([by_arm[b][s]["correct"] for s in seeds]),
            task.test_groups,
            config.bootstrap,
        )
        comparisons.append(
            {
                "a": a,
                "b": b,
                "seeds": seeds,
                "diffs": diffs,
                "mean": mean,
                "t_low": lo,
                "t_high": hi,
                "boot_low": boot["low"],
                "boot_high": boot["high"],
                "p_le_0": boot["p_le_0"],
            }
        )
    return comparisons


# -------------------------------------------------------------------------- markdown


def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _interval(lo: float, hi: float) -> str:
    return "–" if math.isnan(lo) else f"[{_pct(lo)}, {_pct(hi)}]"


_TASK_TITLES = {
    "dynamics": "Synthetic dynamics set: 4 tempo levels (the label lives in how fast the face moves)",
    "real": "Real clip: WolfgangLanger_Pexels, sad vs happy, held out in time",
}


def report_markdown(summary: dict[str, Any]) -> str:
    """``evidence.md``: one section per task (arms, controls, comparisons), then the settings and the machine."""
    lines = _introduction(summary["settings"])
    for t in summary["tasks"]:
        lines += _task_header(t) + _arm_table(t) + _comparison_table(t) + _coverage_lines(t.get("mask_coverage"))
        lines.append("")
    return "\n".join(lines + _cost_table(summary["tasks"]) + _closing(summary))


def _introduction(st: dict[str, Any]) -> list[str]:
    """The title, what every row shares (encoders, pre-training, the probe, the intervals) and the controls."""
    lines = [
        "# Does pre-training help? Evidence at CPU scale",
        "",
        f"Every encoder is {st['model']} at {st['img_size']}², {st['num_frames']} frames {st['temporal_stride']} "
        f"apart; pre-training: {st['steps']} steps of {st['batch_size']} clips, masking ratio "
        f"{st['mask_ratio']:g}, λ = {st['adv_weight']:g}, seeds 0 … {st['seeds'] - 1}. The random-init encoder "
        "of seed s is the one pre-training run s starts from, so differences are paired by seed. The probe, the "
        "same for every row: standardised "
        + (
            "mean-pooled features"
            if st.get("pool", "mean") == "mean"
            else "token features averaged over space in each time slice, the slices side by side"
        )
        + ", L2 logistic regression, C chosen by 3-fold "
        "group-wise cross-validation on the training items (subjects, or blocks of time), the test item's class "
        "probabilities averaged over its clips. Intervals are 95 %: over seeds Student's t (seeds − 1 degrees "
        "of freedom); over the test set a cluster bootstrap (whole test subjects, or blocks of one clip span, "
        "resampled; the seed-mean accuracy) and Wilson's binomial interval for a single accuracy.",
        "",
        "Controls (the same probe on features that are not an encoder's):",
        "",
    ]
    lines += [f"- {name}: {text}" for name, text in CONTROLS.items()]
    lines.append("")
    return lines


def _task_header(t: dict[str, Any]) -> list[str]:
    n, clusters = t["n_test"], t["n_clusters"]
    unit = "test subjects" if t["task"] == "dynamics" else "blocks of one clip span"
    return [
        f"## {_TASK_TITLES.get(t['task'], t['task'])}",
        "",
        f"Test items n = {n} ({clusters} {unit}); training items {t['n_train']}; "
        f"chance {_pct(t['chance'])} %. Pre-training saw: {t['facts']['pretraining_saw']}.",
        "",
    ]


def _arm_table(t: dict[str, Any]) -> list[str]:
    """A task's arms, then its controls and the majority class."""
    lines = [
        "| encoder | accuracy per seed (%) | mean (%) | 95 % CI over seeds (t) | "
        "95 % CI over test items (cluster bootstrap) | probe C |",
        "|---|---|---|---|---|---|",
    ]
    for r in t["rows"]:
        lines.append(
            f"| {r['label']} | {', '.join(_pct(a) for a in r['accuracy'])} | {_pct(r['mean'])} | "
            f"{_interval(r['t_low'], r['t_high'])} | {_interval(r['boot_low'], r['boot_high'])} | "
            f"{', '.join(f'{c:g}' for c in r['C'])} |"
        )
    for c in t["controls"]:
        name = "majority class (of the training set)" if c["arm"] == "majority" else f"control: {c['arm']}"
        lines.append(
            f"| {name} | {_pct(c['accuracy'])} (Wilson {_interval(*c['wilson'])}) | "
            f"{_pct(c['accuracy'])} | – | {_interval(c['boot_low'], c['boot_high'])} | "
            f"{'–' if c['C'] is None else format(c['C'], 'g')} |"
        )
    return lines


def _comparison_table(t: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "| comparison | difference per seed (points) | mean | 95 % CI over seeds (t) | "
        "95 % CI over test items (paired cluster bootstrap) | share of resamples ≤ 0 |",
        "|---|---|---|---|---|---|",
    ]
    for c in t["comparisons"]:
        lines.append(
            f"| {arm_label(c['a'])} − {arm_label(c['b'])} | "
            f"{', '.join(f'{100 * d:+.1f}' for d in c['diffs'])} | {100 * c['mean']:+.1f} | "
            f"{_interval(c['t_low'], c['t_high'])} | {_interval(c['boot_low'], c['boot_high'])} | "
            f"{c['p_le_0']:.3f} |"
        )
    return lines


def _coverage_lines(cover: dict[str, Any] | None) -> list[str]:
    """What the masks hide (:func:`fmae.experiments.coverage.mask_coverage`), when it was measured."""
    if not cover:
        return []
    share = cover["token_share"]
    lines = [
        "",
        "What the masks hide of the pre-training clips (share of each kind of token; tokens: "
        f"{_pct(share['features'])} % eyes/nose/mouth, {_pct(share['skin'])} % skin, "
        f"{_pct(share['hair or background'])} % hair or background):",
        "",
    ]
    for s, v in cover.items():
        if s != "token_share":
            lines.append(
                f"- {s}: {_pct(v['features'])} % of eye/nose/mouth tokens, {_pct(v['skin'])} % of "
                f"skin, {_pct(v['hair or background'])} % of hair/background"
            )
    return lines


def _cost_table(tasks: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "## Cost",
        "",
        "| task | encoder | seed | pre-training (s) | cell total (s) | rec. loss first → last |",
        "|---|---|---|---|---|---|",
    ]
    for t in tasks:
        for r in t["rows"]:
            for s, p, c, (first, last) in zip(r["seeds"], r["pretrain_s"], r["cell_s"], r["rec_loss"]):
                loss = "–" if first is None else f"{first:.3f} → {last:.3f}"
                lines.append(f"| {t['task']} | {r['label']} | {s} | {p:.0f} | {c:.0f} | {loss} |")
    return lines


def _closing(summary: dict[str, Any]) -> list[str]:
    """The run's times, the machine and the settings."""
    m = summary["machine"]
    return [
        "",
        f"Wall time of this run: {summary['wall_s'] / 60:.1f} min (cells done before a rerun count 0); "
        f"sum of the cells' own times {summary['cells_s'] / 60:.1f} min.",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['threads']} thread(s), "
        f"{summary['settings']['dtype']}; load average {m['load_start']} at the start, {m['load_end']} at the "
        f"end; {summary['date']}.",
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in summary["settings"].items()),
        "",
    ]
