"""Turn pytest-benchmark JSON into plots and a Markdown table.

    pytest benchmarks --benchmark-only --benchmark-json=results.json
    python benchmarks/report.py results.json --out benchmarks/results/

Writes, under ``--out``: ``throughput_vs_ratio.png`` (clips/s of the pre-training step
against the masking ratio, HF and FMAE, one panel per model; FMAE's decoder keeps below 1
dashed and dotted), ``encoder_vs_ratio.png``
(encoder time relative to no masking, against the visible fraction and the FLOP ratio),
``decoder_vs_keep.png`` (decoder time relative to keep 1, against the FLOP ratio),
``throughput_vs_stride.png`` (loader clips/s against the temporal stride) — each only
when the JSON holds those benchmarks — and ``results.md``, the tables, under a line
naming the machine and the run's conditions. Several JSON files may be given (repeated
default runs, a ``--full`` one of some ViT-B cases): each run gets its line, and a
benchmark found in several is taken from the run with its fastest round — the same
estimator as the fastest round within a run, since a busy machine only ever adds time
(its extra_info, fraction of the matmul peak included, is that run's).
Times are the fastest round, as in the speed-up table of ``benchmarks/conftest.py``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STEP_IMPLS = {  # test_pretrain_step.py's impl: label
    "hf_videomae": "HF VideoMAE",
    "fmae_random_mae": "FMAE, random mask",
    "fmae_facial_mae": "FMAE, facial mask",
    "fmae_facial_adv": "FMAE, facial mask + adversarial",
}
DASH = "–"


def load(paths: list[Path]) -> tuple[list[dict], list[dict]]:
    """``(machine_info of each run, benchmarks)`` from pytest-benchmark JSON files; a
    benchmark found in several runs is taken from the run with its fastest round."""
    runs = [json.loads(p.read_text()) for p in paths]
    if not runs:
        raise ValueError("no JSON file given")
    fastest: dict[str, dict] = {}
    for i, run in enumerate(runs, 1):
        for b in run["benchmarks"]:
            if b["fullname"] not in fastest or b["stats"]["min"] < fastest[b["fullname"]]["stats"]["min"]:
                fastest[b["fullname"]] = {**b, "run": i}
    return [run["machine_info"] for run in runs], list(fastest.values())


def _test(bench: dict) -> str:
    return bench["name"].split("[")[0]


def _fmt(x, digits: int = 2, scale: float = 1.0) -> str:
    return DASH if x is None else f"{x * scale:.{digits}f}"


def _pct(x) -> str:
    return DASH if x is None else f"{100 * x:.0f} %"


def machine_line(machine: dict) -> str:
    """One line naming the machine and the conditions of the run."""
    cpu, extra = machine.get("cpu", {}), machine.get("fmae", {})
    parts = [
        f"{extra.get('device', 'cpu')}" if extra.get("device", "cpu") != "cpu" else "",
        f"CPU {cpu.get('brand_raw', '?')}, {extra.get('cpu_count', cpu.get('count', '?'))} cores",
        f"torch {extra.get('torch', '?')} ({extra.get('torch_threads', '?')} threads"
        + (f", OMP_WAIT_POLICY={extra['OMP_WAIT_POLICY']}" if extra.get("OMP_WAIT_POLICY") else "")
        + ")",
        f"Python {machine.get('python_version', '?')}",
    ]
    if "load_average_start" in extra:
        parts.append(
            f"load average (1/5/15 min) {extra['load_average_start']} at the start, "
            f"{extra['load_average_end']} at the end"
        )
    peaks = machine.get("matmul_peak_flops_per_s", {})
    if peaks:
        parts.append("square-matmul peak " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peaks.items()))
    return "; ".join(p for p in parts if p) + "."


StepRows = dict[tuple[str, float, str], dict[tuple[str, float], dict]]
"""``{(model, ratio, setting): {(impl, decoder keep): benchmark}}``."""
KEEP_STYLES = {1.0: ("-", "o"), 0.5: ("--", "s"), 0.25: (":", "^")}
"""Line style and marker of each decoder keep in the step plot."""


def _setting(bench: dict) -> str:
    # Runs from before the settings (eager, in the machine's default dtype) name the dtype in the group only.
    return bench["params"].get("setting") or (
        "bf16-eager" if "bfloat16" in (bench.get("group") or "") else "fp32-eager"
    )


def _keep(bench: dict) -> float:
    # Runs from before decoder masking reconstructed every masked cube: keep 1.
    return float(bench["params"].get("keep", 1.0))


def step_rows(benchmarks: list[dict]) -> StepRows:
    """``{(model, ratio, setting): {(impl, keep): benchmark}}`` of test_pretrain_step; where
    runs named the same case differently (before and after the settings or the decoder
    keep), the fastest."""
    rows: StepRows = defaultdict(dict)
    for b in benchmarks:
        if _test(b) == "test_pretrain_step":
            p = b["params"]
            row = rows[(p["model_name"], p["ratio"], _setting(b))]
            key = (p["impl"], _keep(b))
            if key not in row or b["stats"]["min"] < row[key]["stats"]["min"]:
                row[key] = b
    return dict(sorted(rows.items()))


def _keeps(impls: dict[tuple[str, float], dict]) -> list[float]:
    """The decoder keeps FMAE was measured at in a row, 1 first."""
    return sorted({keep for impl, keep in impls if impl != "hf_videomae"} or {1.0}, reverse=True)


def _clips_per_s(bench: dict | None) -> float | None:
    return None if bench is None else bench["extra_info"].get("clips_per_s")


def best_table(rows: StepRows) -> str:
    """Per model, ratio and decoder keep measured in more than one setting: HF's fastest
    setting against FMAE's fastest (same work but the decoder keep: random mask, no adversary)."""
    best: dict[tuple[str, float, float], dict[str, tuple[float, str]]] = defaultdict(dict)
    settings = defaultdict(set)
    for (model, ratio, setting), impls in rows.items():
        for keep in _keeps(impls):
            settings[(model, ratio, keep)].add(setting)
            for impl, at in (("hf_videomae", 1.0), ("fmae_random_mae", keep)):
                speed = _clips_per_s(impls.get((impl, at)))
                if speed is not None and speed > best[(model, ratio, keep)].get(impl, (0.0, ""))[0]:
                    best[(model, ratio, keep)][impl] = (speed, setting)
    lines = [
        "| model | mask ratio | decoder keep | settings measured | HF best clips/s (setting) "
        "| FMAE best clips/s (setting) | FMAE best / HF best |",
        "|---|---|---|---|---|---|---|",
    ]
    for (model, ratio, keep), found in sorted(best.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[0][2])):
        if len(settings[(model, ratio, keep)]) < 2 or len(found) < 2:
            continue
        (hf, hf_setting), (fm, fm_setting) = found["hf_videomae"], found["fmae_random_mae"]
        lines.append(
            f"| {model.removeprefix('fmae_vit_')} | {ratio} | {keep:g} "
            f"| {', '.join(sorted(settings[(model, ratio, keep)]))} "
            f"| {hf:.2f} ({hf_setting}) | {fm:.2f} ({fm_setting}) | {fm / hf:.2f}× |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def step_table(rows: StepRows) -> str:
    """The pre-training step against HF in the same setting, one row per model, ratio,
    setting and FMAE's decoder keep (HF, which reconstructs every masked cube, is the
    same baseline for every keep)."""
    head = (
        "| model | mask ratio | setting | decoder keep | HF clips/s | FMAE clips/s (same work) | FMAE / HF "
        "| FMAE facial+adv clips/s | facial+adv / HF | FMAE tokens/s | useful FLOP/s / matmul peak (HF, FMAE) "
        "| encoder share of FMAE step | step memory MiB (HF, FMAE) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (model, ratio, setting), impls in rows.items():
        hf = impls.get(("hf_videomae", 1.0))
        for keep in _keeps(impls):
            fm, adv = impls.get(("fmae_random_mae", keep)), impls.get(("fmae_facial_adv", keep))

            def info(b, key):
                return None if b is None else b["extra_info"].get(key)

            speedup = hf["stats"]["min"] / fm["stats"]["min"] if hf and fm else None
            adv_speedup = hf["stats"]["min"] / adv["stats"]["min"] if hf and adv else None
            frac = f"{_pct(info(hf, 'fraction_of_peak'))}, {_pct(info(fm, 'fraction_of_peak'))}"
            mem = f"{_fmt(info(hf, 'step_peak_mb'), 0)}, {_fmt(info(fm, 'step_peak_mb'), 0)}"
            lines.append(
                f"| {model.removeprefix('fmae_vit_')} | {ratio} | {setting} | {keep:g} "
                f"| {_fmt(info(hf, 'clips_per_s'))} | {_fmt(info(fm, 'clips_per_s'))} | {_fmt(speedup)}× "
                f"| {_fmt(info(adv, 'clips_per_s'))} | {_fmt(adv_speedup)}× "
                f"| {_fmt(info(fm, 'tokens_per_s'), 0)} | {frac} | {_pct(info(fm, 'encoder_share'))} "
                f"| {mem} |"
            )
    return "\n".join(lines)


def encoder_rows(benchmarks: list[dict]) -> dict[str, list[dict]]:
    """``{model: [benchmark by ratio]}`` of test_throughput's encoder, with
    ``time_vs_unmasked`` added where ratio 0 was measured."""
    rows: dict[str, list[dict]] = defaultdict(list)
    for b in benchmarks:
        if _test(b) == "test_encoder_vs_ratio":
            rows[b["params"]["model_name"]].append(b)
    for members in rows.values():
        members.sort(key=lambda b: b["params"]["ratio"])
        base = [b for b in members if b["params"]["ratio"] == 0.0]
        for b in members:
            b["time_vs_unmasked"] = b["stats"]["min"] / base[0]["stats"]["min"] if base else None
    return dict(rows)


def encoder_table(rows: dict[str, list[dict]]) -> str:
    lines = [
        "| model | mask ratio | visible tokens | encoder fwd+bwd ms | time vs ratio 0 | ideal: visible fraction "
        "| ideal: FLOP ratio | FLOP/s / matmul peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, members in rows.items():
        for b in members:
            e = b["extra_info"]
            lines.append(
                f"| {model.removeprefix('fmae_vit_')} | {b['params']['ratio']} | {e.get('visible_tokens')} "
                f"| {b['stats']['min'] * 1e3:.1f} | {_fmt(b['time_vs_unmasked'], 3)} "
                f"| {_fmt(e.get('visible_fraction'), 3)} | {_fmt(e.get('flops_vs_unmasked'), 3)} "
                f"| {_pct(e.get('fraction_of_peak'))} |"
            )
    return "\n".join(lines)


def decoder_rows(benchmarks: list[dict]) -> dict[str, list[dict]]:
    """``{model: [benchmark by keep, 1 first]}`` of test_throughput's decoder, with
    ``time_vs_keep1`` added where keep 1 was measured."""
    rows: dict[str, list[dict]] = defaultdict(list)
    for b in benchmarks:
        if _test(b) == "test_decoder_vs_keep":
            rows[b["params"]["model_name"]].append(b)
    for members in rows.values():
        members.sort(key=lambda b: -b["params"]["keep"])
        base = [b for b in members if b["params"]["keep"] == 1.0]
        for b in members:
            b["time_vs_keep1"] = b["stats"]["min"] / base[0]["stats"]["min"] if base else None
    return dict(rows)


def decoder_table(rows: dict[str, list[dict]]) -> str:
    lines = [
        "| model | decoder keep | decoder tokens | decoder fwd+bwd ms | time vs keep 1 | ideal: FLOP ratio "
        "| FLOP/s / matmul peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, members in rows.items():
        for b in members:
            e = b["extra_info"]
            lines.append(
                f"| {model.removeprefix('fmae_vit_')} | {b['params']['keep']:g} | {e.get('decoder_tokens')} "
                f"| {b['stats']['min'] * 1e3:.1f} | {_fmt(b['time_vs_keep1'], 3)} "
                f"| {_fmt(e.get('flops_vs_keep1'), 3)} | {_pct(e.get('fraction_of_peak'))} |"
            )
    return "\n".join(lines)


def matmul_table(benchmarks: list[dict]) -> str:
    shapes: dict[str, dict[str, dict]] = defaultdict(dict)
    for b in benchmarks:
        if _test(b) == "test_matmul":
            shapes[b["params"]["shape"]][b["params"]["dtype"]] = b
    lines = ["| product | fp32 GFLOP/s | bf16 GFLOP/s | fp32 / square peak |", "|---|---|---|---|"]
    for shape, by_dtype in shapes.items():
        rate = {d: b["extra_info"].get("flops_per_s") for d, b in by_dtype.items()}
        frac = by_dtype.get("fp32", {}).get("extra_info", {}).get("fraction_of_peak")
        product = next(iter(by_dtype.values()))["extra_info"].get("product", "")
        lines.append(
            f"| {shape} {product} "
            f"| {_fmt(rate.get('fp32'), 1, 1e-9)} | {_fmt(rate.get('bf16'), 1, 1e-9)} "
            f"| {_pct(frac)} |"
        )
    return "\n".join(lines)


def loader_rows(benchmarks: list[dict]) -> dict[str, dict[int, dict]]:
    """``{impl: {stride: benchmark}}`` of test_loader."""
    rows: dict[str, dict[int, dict]] = defaultdict(dict)
    for b in benchmarks:
        if _test(b) == "test_loader_epoch":
            rows[b["params"]["impl"]][b["params"]["stride"]] = b
    return dict(rows)


def loader_table(rows: dict[str, dict[int, dict]]) -> str:
    strides = sorted({s for by_stride in rows.values() for s in by_stride})
    lines = ["| loader | " + " | ".join(f"stride {s} clips/s" for s in strides) + " |", "|---|" + "---|" * len(strides)]
    for impl, by_stride in rows.items():
        cells = [_fmt(by_stride[s]["extra_info"].get("clips_per_s")) if s in by_stride else DASH for s in strides]
        lines.append(f"| {impl} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_steps(rows: StepRows, out: Path) -> None:
    models = sorted({m for m, _, _ in rows})
    settings = sorted({s for _, _, s in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        for n, setting in enumerate(settings):
            for j, (impl, label) in enumerate(STEP_IMPLS.items()):
                color = f"C{(n * len(STEP_IMPLS) + j) % 10}"  # one colour per implementation and setting
                keeps = sorted(
                    {
                        k
                        for (m, _, s), i in rows.items()
                        if m == model and s == setting
                        for name, k in i
                        if name == impl
                    },
                    reverse=True,
                )
                for keep in keeps:
                    pts = [
                        (r, i[(impl, keep)]["extra_info"]["clips_per_s"])
                        for (m, r, s), i in rows.items()
                        if m == model and s == setting and (impl, keep) in i
                    ]
                    text = label if keep == 1.0 else f"{label}, decoder keep {keep:g}"
                    ax.plot(
                        *zip(*pts),
                        marker=KEEP_STYLES.get(keep, ("-.", "D"))[1],
                        linestyle=KEEP_STYLES.get(keep, ("-.", "D"))[0],
                        color=color,
                        label=text if len(settings) == 1 else f"{text}, {setting}",
                    )
        ax.set(title=f"pre-training step, {model}", xlabel="masking ratio", ylabel="clips/s (B=2, 16×224²)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_encoder(rows: dict[str, list[dict]], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, members in rows.items():
        pts = [(b["params"]["ratio"], b["time_vs_unmasked"]) for b in members if b["time_vs_unmasked"] is not None]
        if pts:
            (line,) = ax.plot(*zip(*pts), marker="o", label=f"{model}: measured")
            ideal = [(b["params"]["ratio"], b["extra_info"].get("flops_vs_unmasked")) for b in members]
            ax.plot(*zip(*ideal), linestyle=":", color=line.get_color(), label=f"{model}: FLOP ratio")
    ratios = sorted({b["params"]["ratio"] for members in rows.values() for b in members})
    ax.plot(ratios, [1 - r for r in ratios], color="gray", linestyle="--", label="visible fraction")
    ax.set(title="encoder fwd+bwd time vs no masking", xlabel="masking ratio", ylabel="time / time at ratio 0")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_decoder(rows: dict[str, list[dict]], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, members in rows.items():
        pts = [(b["params"]["keep"], b["time_vs_keep1"]) for b in members if b["time_vs_keep1"] is not None]
        if pts:
            (line,) = ax.plot(*zip(*pts), marker="o", label=f"{model}: measured")
            ideal = [(b["params"]["keep"], b["extra_info"].get("flops_vs_keep1")) for b in members]
            ax.plot(*zip(*ideal), linestyle=":", color=line.get_color(), label=f"{model}: FLOP ratio")
    ax.set(title="decoder fwd+bwd time vs keep 1 (ratio 0.9)", xlabel="decoder keep", ylabel="time / time at keep 1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_loader(rows: dict[str, dict[int, dict]], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for impl, by_stride in rows.items():
        pts = sorted(
            (s, b["extra_info"]["clips_per_s"]) for s, b in by_stride.items() if "clips_per_s" in b["extra_info"]
        )
        if pts:
            ax.plot(*zip(*pts), marker="o", label=impl)
    strides = sorted({s for by_stride in rows.values() for s in by_stride})
    ax.set(title="clip loading (16×224² + region maps)", xlabel="temporal stride", ylabel="clips/s", xscale="log")
    ax.set_xticks(strides, [str(s) for s in strides])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def report(paths: list[Path], out: Path) -> str:
    """Write the plots and ``results.md`` under ``out``; returns the Markdown."""
    machines, benchmarks = load(paths)
    out.mkdir(parents=True, exist_ok=True)
    if len(machines) == 1:
        sections = [f"Machine: {machine_line(machines[0])}"]
    else:
        runs = enumerate(zip(paths, machines), 1)
        sections = ["\n\n".join(f"Run {i} ({p.name}): {machine_line(m)}" for i, (p, m) in runs)]
    steps, encoder, loader = step_rows(benchmarks), encoder_rows(benchmarks), loader_rows(benchmarks)
    decoder = decoder_rows(benchmarks)
    if steps:
        plot_steps(steps, out / "throughput_vs_ratio.png")
        sections.append(
            "### Pre-training step against HF VideoMAE (B=2, 16×224², fastest round)\n\n" + step_table(steps)
        )
        if best_table(steps):
            sections.append("### Each at its fastest setting (dtype, eager or compiled)\n\n" + best_table(steps))
    if encoder:
        plot_encoder(encoder, out / "encoder_vs_ratio.png")
        sections.append("### Encoder forward+backward against the masking ratio\n\n" + encoder_table(encoder))
    if decoder:
        plot_decoder(decoder, out / "decoder_vs_keep.png")
        sections.append(
            "### Decoder forward+backward against the decoder keep (ratio 0.9)\n\n" + decoder_table(decoder)
        )
    if any(_test(b) == "test_matmul" for b in benchmarks):
        sections.append("### Matrix products\n\n" + matmul_table(benchmarks))
    if loader:
        plot_loader(loader, out / "throughput_vs_stride.png")
        sections.append("### Clip loading against the temporal stride\n\n" + loader_table(loader))
    text = "\n\n".join(sections) + "\n"
    (out / "results.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", type=Path, help="pytest-benchmark --benchmark-json files")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results"), help="folder for the plots and results.md"
    )
    args = parser.parse_args(argv)
    print(report(args.json, args.out), end="")


if __name__ == "__main__":
    main()
