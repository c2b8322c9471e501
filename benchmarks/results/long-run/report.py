"""The long run's table and plot: held-out error per region beside the mean face, and the probe
beside the random init, at each milestone (python report.py OUT --plot PNG > long-run.md)."""

import argparse
import json
from pathlib import Path

PARTS = ["all", "left_eye", "right_eye", "nose", "mouth", "background"]


def _milestones(out: Path) -> list[tuple[int, dict, dict | None]]:
    rows = []
    for path in sorted(out.glob("eval-*/reconstruction.json"), key=lambda p: int(p.parent.name.split("-")[1])):
        step = int(path.parent.name.split("-")[1])
        probe = out / f"probe-{step}" / "metrics.json"
        rows.append((step, json.loads(path.read_text()), json.loads(probe.read_text()) if probe.is_file() else None))
    return rows


def _table(rows: list[tuple[int, dict, dict | None]]) -> str:
    columns = " | ".join(f"{p.replace('_', ' ')}: model / mean face" for p in PARTS)
    lines = [
        f"| step | probe (random init; gain, 95 % interval) | {columns} | background: temporal interpolation |",
        "|---:|---|" + "---|" * len(PARTS) + "---:|",
    ]
    for step, r, probe in rows:
        lines.append(
            f"| {step} | {_probe_cell(probe)} | "
            + " | ".join(f"{r['model'][p]:.3f} / {r['mean_face'][p]:.3f}" for p in PARTS)
            + f" | {r['baselines']['temporal_interp']['background']:.3f} |"
        )
    return "\n".join(lines)


def _probe_cell(probe: dict | None) -> str:
    if probe is None:
        return "—"
    paired = probe.get("pretrained_vs_random_init")  # probes since 2026-12-07's seventh session
    gain = f"; {paired['diff']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}]" if paired else ""
    return f"{probe['accuracy']:.3f} ({probe['random_init']['accuracy']:.3f}{gain})"


def _heldout_curve(out: Path) -> tuple[list[int], dict[str, list[float]]]:
    steps, curves = [], {p: [] for p in PARTS}
    for line in (out / "run" / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "heldout/all" in row:
            steps.append(row["step"])
            for p in PARTS:
                curves[p].append(row[f"heldout/{p}"])
    return steps, curves


def _plot(out: Path, rows: list[tuple[int, dict, dict | None]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, curves = _heldout_curve(out)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for p in PARTS:
        (line,) = ax.plot(steps, curves[p], label=p.replace("_", " "))
        if rows:  # the mean face of the milestone evaluations (the same masks): a dashed level
            ax.axhline(rows[-1][1]["mean_face"][p], color=line.get_color(), linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("pre-training step")
    ax.set_ylabel("held-out masked-cube MSE (Validation)")
    ax.set_title("The default recipe's held-out error per region; dashed: the mean face")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _header(out: Path, rows: list[tuple[int, dict, dict | None]]) -> str:
    from fmae.runtime.machine import cpu_name

    reached = max(
        (r["step"] for r in map(json.loads, (out / "run" / "metrics.jsonl").read_text().splitlines())), default=0
    )
    return "\n".join(
        [
            "# How long until the default recipe has learnt faces? (issue #25)",
            "",
            f"One run of `python -m fmae.train` (defaults) with `--steps 10000`, on a {cpu_name()} "
            f"(`--dtype auto`), reached step {reached} so far; milestones evaluated: "
            + (", ".join(str(step) for step, _, _ in rows) or "none")
            + ". Held-out: the Validation split (40 unseen people), `python -m fmae.evaluate CKPT --split "
            "Validation --mean-face`, at the run's ratio; probe: `python -m fmae.probe --checkpoint CKPT` (Test "
            "split of the probing set), beside the random init the run started from. The cosine schedule spans "
            "10k steps, so an early milestone is not a finished short run. Reproduce or go on (resumable): "
            "`bash benchmarks/results/long-run/run.sh runs/long` (`TRAIN=0` measures the milestones reached).",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    rows = _milestones(args.out)
    print(_header(args.out, rows))
    print(_table(rows))
    if args.plot:
        print(f"\n![held-out error per region against the step]({args.plot.name})")
        _plot(args.out, rows, args.plot)


if __name__ == "__main__":
    main()
