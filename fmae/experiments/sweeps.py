"""The paper's ablations (IV-C), one sweep each: every cell is pre-trained, then probed.

Three sweeps, each shaped like the paper's figure or table:

- ``ratio`` (Fig. 8): the masking ratio; accuracy (or EmotiW's MSE) against the ratio.
- ``stride`` (Fig. 9): the minimum temporal sampling stride, against accuracy *and*
  cost. The clip covers a fixed stretch of video, ``num_frames × temporal_stride``
  frames of the base settings, so a finer stride samples more frames from it — that is
  what makes fine strides expensive. Cost is the encoder's matrix-product FLOPs per
  clip with every token visible (:func:`fmae.model.flops.encoder_flops`, what a probe or a
  deployed model pays), the pre-training step's FLOPs per clip
  (:func:`fmae.model.flops.step_flops`), and the measured pre-training clips/s.
- ``strategy`` (Tables III–V): the masking strategy × the losses, reconstruction only
  (RL, ``adv_weight`` 0), adversarial only (AL, ``rec_weight`` 0) or both (RL+AL,
  ``adv_weight`` λ). Table III is the RL+AL rows; Table IV's rows are among them.

A cell is one setting and one seed: :func:`fmae.pretraining.train.pretrain` with the cell's
settings, then :func:`fmae.downstream.probe.run_probe` on its last checkpoint. Each cell works
in its own folder under ``<out_dir>/cells/``, named by its settings and a hash of
everything that shapes its result, and writes ``result.json`` when done: a rerun skips
finished cells, resumes a half-trained one from its checkpoint, and a rerun with other
settings (say more ``steps``) makes new cells instead of reusing stale ones; sweeps into
one ``out_dir`` share cells (the base settings' cell is in all three). One more
probe, of a randomly initialised encoder at the base settings, shows what pre-training
adds. A sweep ends by writing ``<out_dir>/<sweep>.md`` (the table), ``<sweep>.json``
(rows, per-seed cells and settings) and ``<sweep>.png`` (the plot).

The defaults are small budgets (the tiny model at 64×64, 8 frames, 100 steps on the
synthetic set: roughly 10–20 minutes a sweep on two CPU cores); the numbers they give
show the pipeline works and which way a setting pushes, not the paper's values. Scale
up with ``steps``, ``model``, ``img_size``, ``data_root`` and ``seeds``.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from fmae.downstream.probe import TASKS, ProbeConfig, run_probe
from fmae.experiments.cells import Pretrained, run_cell
from fmae.masking import STRATEGIES
from fmae.model import get_config
from fmae.model.flops import encoder_flops, step_flops
from fmae.pretraining.train import TrainConfig
from fmae.runtime.config import check_choices, setting
from fmae.runtime.files import digest, write_json

SWEEPS: tuple[str, ...] = ("ratio", "stride", "strategy")
DEFAULT_VALUES: dict[str, str] = {
    "ratio": "0.25,0.5,0.75,0.9,0.95",  # Fig. 8 spans [0.25, 0.95]
    "stride": "1,2,4,8",
    "strategy": "random,frame,tube,facial",  # Table III's rows, in its order
}
PAPER_DAISEE_ACCURACY: dict[tuple[str, str], float] = {
    # Table V, DAiSEE accuracy (%), ViT-B pre-trained on DAiSEE at full scale.
    ("random", "RL"): 58.26,
    ("random", "AL"): 57.72,
    ("random", "RL+AL"): 59.17,
    ("frame", "RL"): 57.42,
    ("frame", "AL"): 57.36,
    ("frame", "RL+AL"): 57.51,
    ("tube", "RL"): 61.69,
    ("tube", "AL"): 60.83,
    ("tube", "RL+AL"): 62.98,
    ("facial", "RL"): 63.79,
    ("facial", "AL"): 63.64,
    ("facial", "RL+AL"): 64.74,
}
_NOT_GIVEN: Any = object()
_TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_TRAIN_TYPES = typing.get_type_hints(TrainConfig)


def _from_training(name: str, default: Any = _NOT_GIVEN, help: str = "") -> tuple[str, Any, Any]:
    """:class:`fmae.pretraining.train.TrainConfig`'s field ``name`` (its type, choices, default and
    help) as a field of a sweep's settings, with the sweep's own ``default`` and ``help`` where given."""
    field = _TRAIN_FIELDS[name]
    value = field.default if default is _NOT_GIVEN else default
    return name, _TRAIN_TYPES[name], setting(value, help or field.metadata["help"], field.metadata.get("choices"))


def _own(
    name: str, kind: type, default: Any, help: str, choices: tuple[str, ...] | None = None
) -> tuple[str, Any, Any]:
    """A field of a sweep's settings that pre-training does not have."""
    return name, kind, setting(default, help, choices)


# Flag order of ``python -m fmae.ablate --help``; every field but the swept values, the seeds, the
# probe's and ``out_dir`` is TrainConfig's and is handed to each cell's pre-training.
_FIELDS = [
    _own(
        "values",
        str,
        "",
        "comma-separated values to sweep; empty: the defaults (ratio: "
        f"{DEFAULT_VALUES['ratio']}; stride: {DEFAULT_VALUES['stride']}; "
        f"strategy: {DEFAULT_VALUES['strategy']})",
    ),
    _own("seeds", int, 1, "seeds per setting (0 … n-1); tables give the mean, ± the standard deviation over seeds"),
    _from_training("model"),
    _from_training("img_size", 64, "side of the face crop in pixels (the paper: 224)"),
    _from_training(
        "num_frames",
        8,
        "frames per clip (the paper: 16); the stride sweep keeps num_frames × temporal_stride video frames per clip",
    ),
    _from_training("temporal_stride", help="take every k-th frame (the paper: 2)"),
    _from_training("mask_strategy", help="masking strategy of the ratio and stride sweeps"),
    _from_training("mask_ratio", 0.9, "masking ratio of the stride and strategy sweeps (the paper: 0.9)"),
    # The recorded sweeps (benchmarks/results/results.md) predate these defaults of pre-training.
    _from_training("position_embedding", "sincos", "position tables (the sweeps so far: sincos, VideoMAE's)"),
    _from_training("augment", "none", "training-clip augmentation (the sweeps so far: none)"),
    _from_training("decoder_hint", "none", "the decoder's hint of a hidden cube (the sweeps so far: none)"),
    _from_training(
        "decoder_keep", 1.0, "fraction of the masked tokens the decoder reconstructs (the sweeps so far: 1, all)"
    ),
    _from_training(
        "adv_weight", help="λ of the adversarial loss where it is on (RL+AL cells, ratio and stride sweeps)"
    ),
    _from_training("steps", 100, "pre-training steps per cell"),
    _from_training("batch_size", help="pre-training clips per step"),
    _own("task", str, "daisee", "what the probe learns (see python -m fmae.probe --help)", tuple(TASKS)),
    _own("probe_epochs", int, 0, "linear-probe epochs per cell; 0: the probe's default (fmae.probe --epochs)"),
    _from_training("data_root", help="data set folder for pre-training and probing; empty: the built-in synthetic set"),
    _own("out_dir", str, "runs/ablate", "where cells, tables and plots go"),
    _from_training("dtype", help="compute dtype"),
    _from_training("device"),
    _from_training("num_workers"),
]
_TRAINING = [name for name, _, _ in _FIELDS if name in _TRAIN_FIELDS and name != "out_dir"]
"""The settings a sweep hands to pre-training as they are."""


def _check(self: Any) -> None:
    check_choices(self)
    if self.seeds < 1 or self.probe_epochs < 0:
        raise ValueError(f"seeds must be at least 1 and probe_epochs >= 0, got {self.seeds}, {self.probe_epochs}")
    if self.adv_weight <= 0:
        raise ValueError(f"adv_weight must be positive (the RL-only cells set it to 0), got {self.adv_weight}")
    _train_config(self, "")  # TrainConfig checks the rest


AblationConfig = dataclasses.make_dataclass(
    "AblationConfig",
    _FIELDS,
    namespace={
        "__doc__": "The settings every cell of a sweep shares; the swept one is overridden per cell. Its "
        "pre-training settings are :class:`fmae.pretraining.train.TrainConfig`'s fields (types, choices), "
        "with the sweep's defaults and help.",
        "__post_init__": _check,
        "__module__": __name__,
    },
)


@dataclass(frozen=True)
class Cell:
    """One pre-train + probe run of a sweep: the swept ``value``, its ``losses``
    (``"RL"``, ``"AL"`` or ``"RL+AL"``) and ``seed``, and the pre-training settings ``train``
    (whose ``out_dir`` is the cell's ``pretrain/`` folder)."""

    sweep: str
    value: Any
    losses: str
    seed: int
    train: TrainConfig

    @property
    def folder(self) -> Path:
        return Path(self.train.out_dir).parent


def _train_config(config: AblationConfig, out_dir: str, **overrides: Any) -> TrainConfig:
    settings = {name: getattr(config, name) for name in _TRAINING}
    settings.update(out_dir=out_dir, **overrides)
    steps = settings["steps"]
    # Ten log records for clips/s; a few checkpoints to resume a cell from; one image at the end.
    settings.update(log_every=max(1, steps // 10), ckpt_every=max(1, steps // 4), image_every=steps, keep_last=1)
    return TrainConfig(**settings)


def parse_values(sweep: str, text: str, config: AblationConfig) -> list[Any]:
    """The values ``text`` (comma-separated; empty: :data:`DEFAULT_VALUES`) of ``sweep``,
    checked: ratios in (0, 1); strides that split the clip's span (``num_frames ×
    temporal_stride`` video frames) into an even number of frames; known strategies."""
    if sweep not in SWEEPS:
        raise ValueError(f"unknown sweep {sweep!r}; choose one of {SWEEPS}")
    words = [w.strip() for w in (text or DEFAULT_VALUES[sweep]).split(",") if w.strip()]
    if not words:
        raise ValueError(f"no values to sweep in {text!r}; give a comma-separated list such as {DEFAULT_VALUES[sweep]}")
    if len(set(words)) != len(words):
        raise ValueError(f"values repeat in {text!r}")
    try:
        values: list[Any] = [float(w) if sweep == "ratio" else int(w) if sweep == "stride" else w for w in words]
    except ValueError:
        kind = "numbers" if sweep == "ratio" else "integers"
        raise ValueError(f"{sweep} values must be {kind}, got {text!r}") from None
    span = config.num_frames * config.temporal_stride
    for v in values:
        if sweep == "ratio" and not 0.0 < v < 1.0:
            raise ValueError(f"masking ratios must be in (0, 1), got {v}")
        if sweep == "stride" and (v < 1 or span % v or (span // v) % 2):
            raise ValueError(
                f"stride {v} does not split the clip's {span} video frames "
                f"(num_frames {config.num_frames} × temporal_stride {config.temporal_stride}) "
                "into an even number of frames"
            )
        if sweep == "strategy" and v not in STRATEGIES:
            raise ValueError(f"unknown masking strategy {v!r}; choose from {STRATEGIES}")
    return values


def _cell_id(config: AblationConfig, train: TrainConfig) -> str:
    """Hash of what shapes a cell's result: its pre-training settings (not where it runs
    or writes) and the probe's."""
    settings = {k: v for k, v in dataclasses.asdict(train).items() if k not in ("out_dir", "device", "num_workers")}
    return digest({**settings, "task": config.task, "probe_epochs": config.probe_epochs})


def make_cells(sweep: str, config: AblationConfig) -> list[Cell]:
    """The cells of ``sweep`` in table order: values (× losses for ``strategy``) × seeds."""
    cells = []
    span = config.num_frames * config.temporal_stride
    for value in parse_values(sweep, config.values, config):
        if sweep == "ratio":
            variants = [("RL+AL", {"mask_ratio": value})]
        elif sweep == "stride":
            variants = [("RL+AL", {"temporal_stride": value, "num_frames": span // value})]
        else:
            variants = [
                ("RL", {"mask_strategy": value, "adv_weight": 0.0}),
                ("AL", {"mask_strategy": value, "rec_weight": 0.0}),
                ("RL+AL", {"mask_strategy": value}),
            ]
        for losses, overrides in variants:
            for seed in range(config.seeds):
                train = _train_config(config, "", seed=seed, **overrides)
                # Named by the settings, not the sweep: the base settings' cell serves all three sweeps.
                name = (
                    f"{train.mask_strategy}-ratio{train.mask_ratio:g}-stride{train.temporal_stride}-"
                    f"{losses.replace('+', '')}-seed{seed}-{_cell_id(config, train)}"
                )
                train = dataclasses.replace(train, out_dir=str(Path(config.out_dir) / "cells" / name / "pretrain"))
                cells.append(Cell(sweep, value, losses, seed, train))
    return cells


def _metrics(report: dict[str, Any]) -> dict[str, float]:
    """The paper's numbers from a :func:`fmae.downstream.probe.run_probe` report: accuracy (%) and
    weighted precision/recall/F1, or MSE; with the trivial baseline."""
    if "accuracy" in report:
        return {
            "accuracy": 100 * report["accuracy"],
            "precision": report["precision"]["weighted"],
            "recall": report["recall"]["weighted"],
            "f1": report["f1"]["weighted"],
            "f1_macro": report["f1"]["macro"],
            "baseline": 100 * report["majority_accuracy"],
            "eval_videos": report["eval_videos"],
        }
    return {"mse": report["mse"], "baseline": report["mean_baseline_mse"], "eval_videos": report["eval_videos"]}


def _probe_config(config: AblationConfig, out_dir: Path, seed: int, stride: int, **source: Any) -> ProbeConfig:
    return ProbeConfig(
        task=config.task,
        data_root=config.data_root,
        temporal_stride=stride,
        epochs=config.probe_epochs,
        dtype=config.dtype,
        device=config.device,
        num_workers=config.num_workers,
        out_dir=str(out_dir),
        seed=seed,
        random_baseline=False,  # every sweep has its own random-init reference (run_reference)
        **source,
    )


def _clips_per_s(records: Sequence[dict[str, Any]]) -> float | None:
    """Median pre-training throughput over the run's log records, the first left out
    when there are others (it carries start-up and warm-up)."""
    rates = [r["clips_per_s"] for r in records]
    return statistics.median(rates[1:] or rates) if rates else None


def run_sweep_cell(cell: Cell, config: AblationConfig, progress: bool = True) -> dict[str, Any]:
    """Pre-train and probe one cell (:func:`fmae.experiments.cells.run_cell`), or read its
    ``result.json`` when it is done.

    Returns the cell's settings, :func:`_metrics` of its probe, and its cost:
    ``encoder_gflops`` (encoder forward, every token visible, per clip),
    ``pretrain_gflops`` (one pre-training step per clip) and measured ``clips_per_s``.
    """
    here = {"sweep": cell.sweep, "value": cell.value, "losses": cell.losses}

    def measure(pretrained: Pretrained | None) -> dict[str, Any]:
        assert pretrained is not None
        return {**here, **_probe_pretrained(cell, config, pretrained, progress)}

    return {**run_cell(cell.folder, measure, train=cell.train, progress=progress), **here}


def _probe_pretrained(cell: Cell, config: AblationConfig, pretrained: Pretrained, progress: bool) -> dict[str, Any]:
    """The probe of a cell's pre-trained encoder, with the cell's settings and cost."""
    t, checkpoint = cell.train, pretrained.checkpoint
    report = run_probe(
        _probe_config(config, cell.folder / "probe", cell.seed, t.temporal_stride, checkpoint=str(checkpoint)), progress
    )
    mc = get_config(t.model, img_size=t.img_size, num_frames=t.num_frames)
    return {
        "seed": cell.seed,
        "mask_strategy": t.mask_strategy,
        "mask_ratio": t.mask_ratio,
        "temporal_stride": t.temporal_stride,
        "num_frames": t.num_frames,
        "adv_weight": t.adv_weight,
        "rec_weight": t.rec_weight,
        "steps": t.steps,
        **_metrics(report),
        "encoder_gflops": encoder_flops(mc, 1, mc.num_tokens)[0] / 1e9,
        "pretrain_gflops": step_flops(mc, 1, t.mask_ratio, t.mask_strategy, t.adv_weight).total / 1e9,
        "clips_per_s": _clips_per_s(pretrained.log),
        "checkpoint": str(checkpoint),
        "probe_dir": str(cell.folder / "probe"),
    }


def run_reference(config: AblationConfig, progress: bool = True) -> dict[str, Any]:
    """Probe of a randomly initialised encoder at the base settings (seed 0): what the
    probe reaches without pre-training. Cached like a cell."""
    settings = {
        k: getattr(config, k)
        for k in ("model", "img_size", "num_frames", "temporal_stride", "task", "probe_epochs", "data_root", "dtype")
    }
    folder = Path(config.out_dir) / "cells" / f"reference-random-init-{digest(settings)}"
    probe = _probe_config(
        config,
        folder / "probe",
        0,
        config.temporal_stride,
        random_init=True,
        model=config.model,
        img_size=config.img_size,
        num_frames=config.num_frames,
    )
    return run_cell(folder, lambda _: _metrics(run_probe(probe, progress)), progress=progress)


def sweep_rows(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (value, losses) in first-seen order: the seeds' mean of every metric
    and cost, ``<name>_std`` (sample standard deviation, 0 for one seed) and ``seeds``."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault((json.dumps(c["value"]), c["losses"]), []).append(c)
    rows = []
    for members in groups.values():
        first = members[0]
        row = {
            k: first.get(k)
            for k in (
                "value",
                "losses",
                "mask_strategy",
                "mask_ratio",
                "temporal_stride",
                "num_frames",
                "adv_weight",
                "rec_weight",
            )
        }
        row["seeds"] = len(members)
        for key in (
            "accuracy",
            "precision",
            "recall",
            "f1",
            "f1_macro",
            "mse",
            "baseline",
            "encoder_gflops",
            "pretrain_gflops",
            "clips_per_s",
        ):
            numbers = [m[key] for m in members if m.get(key) is not None]
            if numbers:
                row[key] = statistics.fmean(numbers)
                row[f"{key}_std"] = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
        rows.append(row)
    return rows


def _cell_text(row: dict[str, Any], key: str, digits: int) -> str:
    if key not in row:
        return "–"
    text = f"{row[key]:.{digits}f}"
    exact = key.endswith("_gflops")  # counted, not measured: the same for every seed
    return text + (f" ± {row[key + '_std']:.{digits}f}" if row["seeds"] > 1 and not exact else "")


_TITLES = {
    "ratio": "Masking ratio (paper Fig. 8)",
    "stride": "Minimum temporal stride: accuracy and cost (paper Fig. 9)",
    "strategy": "Masking strategy × losses (paper Tables III–V)",
}


# (head, key, decimals) of the table's number columns.
_METRIC_COLUMNS = {
    "classification": [
        ("accuracy (%)", "accuracy", 2),
        ("precision", "precision", 2),
        ("recall", "recall", 2),
        ("F1", "f1", 2),
    ],
    "regression": [("MSE", "mse", 4)],
}
_COST_COLUMNS = [
    ("encoder GFLOPs / clip", "encoder_gflops", 3),
    ("pre-training GFLOPs / clip", "pretrain_gflops", 3),
    ("pre-training clips/s", "clips_per_s", 1),
]
_LEAD_HEADS = {
    "ratio": ["masking ratio"],
    "stride": ["temporal stride", "frames per clip"],
    "strategy": ["masking strategy", "RL", "AL"],
}


def _lead(sweep: str, row: dict[str, Any]) -> list[str]:
    """The cells of a table row that name its setting (under :data:`_LEAD_HEADS`)."""
    if sweep == "ratio":
        return [f"{row['value']:g}"]
    if sweep == "stride":
        return [str(row["value"]), str(row["num_frames"])]
    return [str(row["value"]).capitalize(), "✓" if row["losses"] != "AL" else "", "✓" if row["losses"] != "RL" else ""]


def sweep_table(sweep: str, rows: Sequence[dict[str, Any]], reference: dict[str, Any], config: AblationConfig) -> str:
    """The sweep's table, shaped like the paper's, with the baselines and settings below it."""
    kind = TASKS[config.task].kind
    columns = _METRIC_COLUMNS[kind] + (_COST_COLUMNS if sweep == "stride" else [])
    paper = sweep == "strategy" and config.task == "daisee"
    heads = _LEAD_HEADS[sweep] + [head for head, _, _ in columns] + (["paper accuracy (%)"] if paper else [])
    lines = [f"# {_TITLES[sweep]}", "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        cells = _lead(sweep, r) + [_cell_text(r, key, digits) for _, key, digits in columns]
        if paper:
            cells.append(f"{PAPER_DAISEE_ACCURACY[(r['value'], r['losses'])]:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    seeds = rows[0]["seeds"] if rows else 0
    if kind == "classification":
        base = (
            f"Baselines: a probe of a randomly initialised encoder (no pre-training) reaches "
            f"{reference['accuracy']:.2f} % accuracy; always predicting the training set's majority class, "
            f"{reference['baseline']:.2f} %. Precision, recall and F1 are weighted by class support, "
            "as the paper's."
        )
        if reference.get("eval_videos"):
            n = reference["eval_videos"]
            base += f" {n} test videos: one video moves the accuracy by {100 / n:.1f} points."
    else:
        base = (
            f"Baselines: a probe of a randomly initialised encoder reaches MSE {reference['mse']:.4f}; "
            f"predicting the training mean, {reference['baseline']:.4f}."
        )
    lines += [
        "",
        base,
        "",
        f"Settings: {config.model}, {config.img_size}×{config.img_size}, {config.steps} pre-training steps of "
        f"{config.batch_size} clips, {config.probe_epochs or 'default'} probe epochs, task {config.task}, data "
        f"{config.data_root or 'built-in synthetic set'}, {seeds} seed(s) per row (mean ± standard deviation).",
    ]
    if sweep == "stride":
        lines.append(
            f"Every clip covers {config.num_frames * config.temporal_stride} video frames; "
            "GFLOPs count matrix products (fmae.model.flops); clips/s is measured on this run's machine."
        )
    if sweep == "strategy":
        lines.append(
            "RL: reconstruction loss; AL: adversarial loss (λ = "
            f"{config.adv_weight:g}); AL alone trains the autoencoder through the discriminator only."
        )
    return "\n".join(lines) + "\n"


def save_plot(
    sweep: str, rows: Sequence[dict[str, Any]], reference: dict[str, Any], config: AblationConfig, path: str | Path
) -> Path:
    """The sweep's plot: ratio → metric line; stride → metric line and encoder GFLOPs on a
    second axis; strategy → grouped bars, one group per strategy, one bar per losses.
    Error bars are the standard deviation over seeds; grey lines: the random-init probe (dotted)
    and the trivial baseline (dashed)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    key = "accuracy" if TASKS[config.task].kind == "classification" else "mse"
    label = "accuracy (%)" if key == "accuracy" else "MSE"
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    try:
        if sweep == "strategy":
            _plot_bars(ax, rows, key)
            cost = None
        else:
            cost = _plot_line(ax, sweep, rows, key, label)
        _plot_baselines(ax, reference, key)
        ax.set_ylabel(label)
        ax.set_title(_TITLES[sweep], fontsize=10)
        handles, labels = ax.get_legend_handles_labels()
        if cost is not None:
            more = cost.get_legend_handles_labels()
            handles, labels = handles + more[0], labels + more[1]
        ax.legend(handles, labels, fontsize=8, loc="best")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return Path(path)


def _plot_bars(ax: Any, rows: Sequence[dict[str, Any]], key: str) -> None:
    """The strategy sweep: one group of bars per strategy, one bar per losses."""
    names = list(dict.fromkeys(r["value"] for r in rows))
    losses = list(dict.fromkeys(r["losses"] for r in rows))
    width = 0.8 / len(losses)
    for i, loss in enumerate(losses):
        offset = (i - (len(losses) - 1) / 2) * width
        xs = [names.index(r["value"]) + offset for r in rows if r["losses"] == loss]
        ys = [r[key] for r in rows if r["losses"] == loss]
        errs = [r[key + "_std"] for r in rows if r["losses"] == loss]
        bars = ax.bar(xs, ys, width, yerr=errs, capsize=3, label=loss)
        ax.bar_label(bars, fmt="%.1f" if key == "accuracy" else "%.3f", fontsize=7)
    ax.set_xticks(range(len(names)), [n.capitalize() for n in names])
    ax.set_xlabel("masking strategy")


def _plot_line(ax: Any, sweep: str, rows: Sequence[dict[str, Any]], key: str, label: str) -> Any:
    """The ratio or stride sweep: the metric against the value; for the stride, the encoder's
    GFLOPs on a second axis, which is returned (else ``None``)."""
    xs = [r["value"] for r in rows]
    ax.errorbar(
        xs,
        [r[key] for r in rows],
        yerr=[r[key + "_std"] for r in rows],
        marker="o",
        capsize=3,
        color="C0",
        label=label,
    )
    ax.set_xlabel("masking ratio" if sweep == "ratio" else "minimum temporal stride")
    if sweep != "stride":
        return None
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    cost = ax.twinx()
    cost.plot(
        xs,
        [r["encoder_gflops"] for r in rows],
        marker="s",
        linestyle="--",
        color="C1",
        label="encoder GFLOPs / clip",
    )
    cost.set_ylabel("encoder GFLOPs / clip", color="C1")
    cost.set_ylim(bottom=0)
    return cost


def _plot_baselines(ax: Any, reference: dict[str, Any], key: str) -> None:
    """Grey lines: the random-init probe (dotted) and the trivial baseline (dashed)."""
    ax.axhline(reference[key], color="grey", linestyle=":", label="random-init encoder")
    ax.axhline(
        reference["baseline"],
        color="grey",
        linestyle="--",
        linewidth=0.8,
        label="majority class" if key == "accuracy" else "training mean",
    )


def run_sweep(sweep: str, config: AblationConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or finish) every cell of ``sweep`` and the random-init reference, then write
    ``<out_dir>/<sweep>.md``, ``.json`` and ``.png``.

    Returns what ``<sweep>.json`` holds: ``sweep``, ``settings`` (``config``), ``rows``
    (:func:`sweep_rows`), ``cells`` (per seed), ``reference``, and ``files`` (the three paths).
    """
    cells = make_cells(sweep, config)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for cell in tqdm(cells, desc=f"ablate {sweep}", unit="cell", disable=not progress, dynamic_ncols=True):
        results.append(run_sweep_cell(cell, config, progress))
    reference = run_reference(config, progress)
    rows = sweep_rows(results)
    files = {"md": str(out / f"{sweep}.md"), "json": str(out / f"{sweep}.json"), "png": str(out / f"{sweep}.png")}
    summary = {
        "sweep": sweep,
        "settings": dataclasses.asdict(config),
        "rows": rows,
        "cells": results,
        "reference": reference,
        "files": files,
    }
    Path(files["md"]).write_text(sweep_table(sweep, rows, reference, config))
    save_plot(sweep, rows, reference, config, files["png"])
    write_json(files["json"], summary)
    return summary
