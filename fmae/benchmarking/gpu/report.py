"""The GPU check's report: the counts (:func:`summarize`), a few words per check
(:func:`summary_line`), the terminal's closing table (:func:`summary_text`), and the files:
``gpu_check.json`` and its Markdown summary ``gpu_check.md`` (:func:`write_report`)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Callable, Sequence

from fmae.benchmarking.gpu.config import JSON_NAME, MD_NAME
from fmae.runtime.files import write_atomically, write_json


def jsonable(obj: Any) -> Any:
    """``obj`` with what strict JSON cannot hold made plain: non-finite floats as strings,
    tuples as lists, anything else unknown as its ``str``."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def summarize(results: Sequence[dict]) -> dict[str, int]:
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    for r in results:
        counts[r.get("status", "failed")] = counts.get(r.get("status", "failed"), 0) + 1
    return counts


def write_report(out_dir: str | Path, report: dict) -> tuple[Path, Path]:
    """Write ``gpu_check.json`` and ``gpu_check.md`` into ``out_dir`` (atomically); return their paths."""
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / JSON_NAME, out_dir / MD_NAME
    write_json(json_path, jsonable(report))
    text = format_markdown(report)
    write_atomically(md_path, lambda tmp: tmp.write_text(text))
    return json_path, md_path


# ----------------------------------------------------------------------------- a few words per check


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def _summary_of_tests(d: dict) -> str | None:
    if d.get("counts"):
        return _counts(d["counts"])
    if d.get("counts_so_far"):
        return "stopped: " + _counts(d["counts_so_far"]) + " by then"
    return None


def _summary_of_attention(d: dict) -> str | None:
    if not d.get("cases"):
        return None
    timed = [r for r in d["cases"] if r.get("backend") == "triton" and r.get("speedup_vs_sdpa")]
    bad = sum(r.get("status") == "failed" for r in d["cases"])
    text = f"{len(d['cases'])} cases, {bad} failed"
    if timed:
        text += f"; triton/sdpa speed-up median {statistics.median(r['speedup_vs_sdpa'] for r in timed):.2f}x"
    return text


def _summary_of_step(d: dict) -> str | None:
    if not d.get("cases"):
        return None
    parts = [
        f"{r['impl']} keep {r['decoder_keep']:g}: {r['speedup_vs_hf']:.2f}x HF"
        for r in d["cases"]
        if r.get("speedup_vs_hf")
    ]
    return "; ".join(parts) or f"{len(d['cases'])} cases"


def _summary_of_dali(d: dict) -> str | None:
    if not d.get("variants"):
        return None
    return "; ".join(
        f"{k} {v.get('status')}" + (f" ({v['dali_speedup']:.2f}x torch)" if v.get("dali_speedup") else "")
        for k, v in d["variants"].items()
    )


def _summary_of_memory(d: dict) -> str | None:
    if not d.get("cases"):
        return None
    return "; ".join(
        f"{r['model'].removeprefix('fmae_vit_')}{' ckpt' if r['grad_checkpointing'] else ''} "
        + (f"B<={r['largest_batch']}" if r.get("largest_batch") is not None else str(r.get("status")))
        for r in d["cases"]
    )


_SUMMARIES: dict[str, Callable[[dict], str | None]] = {
    "tests": _summary_of_tests,
    "attention": _summary_of_attention,
    "step": _summary_of_step,
    "dali": _summary_of_dali,
    "memory": _summary_of_memory,
}


def summary_line(result: dict) -> str:
    """A few words on a result: its counts or speed-ups, else its reason or error."""
    try:
        summary = _SUMMARIES.get(result.get("name"), lambda d: None)(result.get("details") or {})
        if summary:
            return summary
    except Exception:  # noqa: BLE001 - a summary never breaks the report
        pass
    return str(result.get("reason") or result.get("error") or "")[:200]


def summary_text(report: dict) -> str:
    """The terminal's closing table: one line per check."""
    results = report.get("checks") or []
    width = max([len(r.get("name", "")) for r in results] + [5])
    lines = [f"GPU check on {report.get('environment', {}).get('gpu')}, {report.get('wall_s')} s:"]
    lines += [
        f"  {r.get('name', ''):<{width}}  {r.get('status', ''):<7}  {r.get('seconds', 0):>6.0f} s  {summary_line(r)}"
        for r in results
    ]
    c = report.get("summary") or summarize(results)
    lines.append(f"{c.get('ok', 0)} ok, {c.get('failed', 0)} failed, {c.get('skipped', 0)} skipped")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- Markdown


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def _folded(title: str, text: str) -> list[str]:
    """``text`` in a folded ``<details>`` block (its last 3000 characters)."""
    return [f"<details><summary>{title}</summary>", "", "```", text[-3000:], "```", "", "</details>", ""]


def _md_tests(d: dict) -> list[str]:
    lines = [
        f"`{d.get('command', '')}` — exit status {_fmt(d.get('returncode'))}"
        + (" (stopped: out of time)" if d.get("timed_out") else "")
        + f", {_fmt(d.get('seconds'))} s",
        "",
    ]
    for key, what in (("counts", "Counts"), ("counts_so_far", "Counts when it was stopped")):
        if d.get(key):
            lines += [f"{what}:", "", *_table(list(d[key]), [list(d[key].values())]), ""]
    if d.get("problems"):
        lines += ["Failures and errors:", "", *[f"- `{p}`" for p in d["problems"]], ""]
    if d.get("output_tail"):
        lines += _folded("end of the output", d["output_tail"])
    return lines


_ATTENTION_COLUMNS = (
    "shape",
    "B",
    "heads",
    "N",
    "dtype",
    "mode",
    "backend",
    "status",
    "ms",
    "× sdpa",
    "max err out",
    "max err grads",
    "rel err",
    "note",
)


def _md_attention(d: dict) -> list[str]:
    lines = []
    if d.get("backends_skipped"):
        lines += [f"- {b} skipped: {why}" for b, why in d["backends_skipped"].items()] + [""]
    rows = []
    for r in d.get("cases", []):
        errs = r.get("max_err") or {}
        rows.append(
            [r.get(k) for k in ("shape", "B", "heads", "N", "dtype", "mode", "backend", "status", "ms")]
            + [
                r.get("speedup_vs_sdpa"),
                errs.get("out"),
                max((v for k, v in errs.items() if k != "out"), default=None),
                r.get("rel_err"),
                r.get("error") or r.get("reason"),
            ]
        )
    return (
        lines
        + _table(_ATTENTION_COLUMNS, rows)
        + [
            "",
            "Errors: largest |Δ| from the float32 reference on the same inputs; rel err over the "
            "reference's largest magnitude.",
            "",
        ]
    )


def _md_step(d: dict) -> list[str]:
    s = d.get("settings") or {}
    lines = [
        f"{s.get('model')}, {s.get('frames')}×{s.get('img_size')}², B={s.get('batch_size')}, ratio "
        f"{s.get('ratio')}, {s.get('dtype')}, {s.get('steps')} timed steps after {s.get('warmup')}; decoder "
        f"masking available: {_fmt(d.get('decoder_keep_available'))}",
        "",
    ]
    keys = ("impl", "decoder_keep", "status", "s_per_step", "clips_per_s", "tflops", "speedup_vs_hf", "peak_mem_mb")
    rows = [[r.get(k) for k in keys] + [r.get("loss"), r.get("error") or r.get("reason")] for r in d.get("cases", [])]
    header = ["impl", "decoder keep", "status", "s/step", "clips/s", "TFLOP/s", "× HF", "peak MiB", "loss", "note"]
    return lines + _table(header, rows) + [""]


_DALI_COLUMNS = {
    "status": "status",
    "dali_clip_device": "DALI output on",
    "same_order": "same order",
    "same_frames": "same frames",
    "same_region_maps": "same maps",
    "mean_abs_luma_diff": "mean |Δ| luma",
    "mean_abs_pixel_diff": "mean |Δ| RGB",
    "max_abs_pixel_diff": "max |Δ| RGB",
    "dali_first_epoch_s": "DALI 1st epoch s",
    "dali_epoch_s": "DALI epoch s",
    "torch_epoch_s": "torch epoch s",
    "dali_speedup": "DALI × torch",
}


def _md_dali(d: dict) -> list[str]:
    from fmae.benchmarking.gpu.dali import DALI_LUMA_TOLERANCE  # here: the check's module imports the runner

    s = d.get("settings") or {}
    lines = [
        f"{s.get('videos')} videos of {s.get('video_frames')} frames at {s.get('size')}², {s.get('items')} "
        f"items, batches of {s.get('batch_size')} × {s.get('num_frames')} frames (stride {s.get('stride')}), "
        f"on {s.get('device')}",
        "",
    ]
    rows = [
        [codec, *(v.get(k) for k in _DALI_COLUMNS), v.get("error") or v.get("reason")]
        for codec, v in (d.get("variants") or {}).items()
    ]
    return (
        lines
        + _table(["codec", *_DALI_COLUMNS.values(), "note"], rows)
        + [
            "",
            "Pixel differences in 0–255 units between DALI's and PyAV's decoding of the same files; the luma is "
            f"checked (≤ {DALI_LUMA_TOLERANCE}), the colour only reported.",
            "",
        ]
    )


def _md_memory(d: dict) -> list[str]:
    s = d.get("settings") or {}
    lines = [
        f"{s.get('frames')}×{s.get('img_size')}² clips, the full step (facial mask at ratio {s.get('ratio')}, "
        f"discriminator, fused AdamW), {s.get('dtype')}, on {s.get('device')} ({_fmt(s.get('gpu_memory_gib'))} GiB); "
        f"batches tried up to {s.get('cap')}",
        "",
    ]
    keys = ("model", "grad_checkpointing", "status", "largest_batch", "smallest_failing", "batch_gain", "peak_gib")
    rows = [
        [r.get(k) for k in keys] + [r.get("s_per_step"), len(r.get("tried") or []), r.get("error") or r.get("reason")]
        for r in d.get("cases", [])
    ]
    header = ["model", "checkpointing", "status", "largest fitting", "smallest failing", "× batch", "peak GiB"]
    return (
        lines
        + _table([*header, "s/step there", "trials", "note"], rows)
        + [
            "",
            "Largest fitting: the largest batch whose step ran; smallest failing: the smallest that ran out of "
            "memory (— when none did up to the cap); × batch: with checkpointing over without; peak GiB: "
            "torch.cuda.max_memory_allocated in that step (clips, weights, gradients, AdamW state, activations); "
            "s/step there: that one step's wall time, not a benchmark.",
            "",
        ]
    )


_MD_DETAILS: dict[str, Callable[[dict], list[str]]] = {
    "tests": _md_tests,
    "attention": _md_attention,
    "step": _md_step,
    "dali": _md_dali,
    "memory": _md_memory,
}


def _md_machine(env: dict) -> list[str]:
    """The table of the GPU, the versions and the machine."""
    pk = env.get("packages") or {}
    gpu = env.get("gpu") or "no GPU"
    return _table(
        ["", ""],
        [
            [
                "GPU",
                f"{gpu} ({env.get('gpu_capability', '?')}, {env.get('gpu_memory_gib', '?')} GiB, "
                f"{env.get('gpu_count', '?')} device(s)), driver {env.get('driver') or '?'}",
            ],
            ["torch", f"{env.get('torch')} (CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')})"],
            ["Triton", env.get("triton")],
            [
                "fmae",
                f"{env.get('fmae')}; CUDA extension built: {_fmt(env.get('cuda_extension_built'))}, C++ extension "
                f"built: {_fmt(env.get('cpp_extension_built'))}",
            ],
            ["packages", ", ".join(f"{k} {v}" for k, v in pk.items() if v) or "—"],
            ["machine", f"Python {env.get('python')}, {env.get('cpu_count')} CPUs, {env.get('platform')}"],
        ],
    )


def _md_checks(results: Sequence[dict]) -> list[str]:
    """One line per check."""
    return _table(
        ["check", "status", "seconds", "limit s", "summary"],
        [
            [
                f"{r.get('name')}: {r.get('title')}",
                f"**{r.get('status')}**",
                r.get("seconds"),
                r.get("limit_s"),
                summary_line(r),
            ]
            for r in results
        ],
    )


def _md_details(r: dict) -> list[str]:
    """A check's numbers laid out; odd details shown raw, never lost."""
    details = r.get("details") or {}
    if not details or r.get("name") not in _MD_DETAILS:
        return []
    try:
        return _MD_DETAILS[r["name"]](details)
    except Exception as err:  # noqa: BLE001
        raw = json.dumps(jsonable(details), indent=1)[:6000]
        return [f"(details could not be laid out: {err!r})", "", "```json", raw, "```", ""]


def _md_result(r: dict) -> list[str]:
    """One check's section: its reason, error, notes, problems, numbers, and the end of what it printed."""
    lines = ["", f"## {r.get('name')}: {r.get('title')} — {r.get('status')}", ""]
    if r.get("reason"):
        lines += [f"Reason: {r['reason']}", ""]
    if r.get("error"):
        lines += [f"Error: `{_fmt(r['error'])}`", ""]
    lines += [f"- note: {n}" for n in r.get("notes") or []]
    lines += [f"- problem: {f}" for f in (r.get("failures") or [])[:30]]
    if r.get("notes") or r.get("failures"):
        lines.append("")
    lines += _md_details(r)
    for key, title in (("traceback", "traceback"), ("output_tail", "end of the check's output")):
        if r.get(key) and r.get("status") == "failed" and r.get("name") != "tests":
            lines += _folded(title, r[key])
    return lines


def format_markdown(report: dict) -> str:
    """The Markdown summary of a report: the machine, one line per check, then each check's numbers."""
    env = report.get("environment") or {}
    results = report.get("checks") or []
    counts = report.get("summary") or summarize(results)
    lines = [
        f"# FMAE GPU check: {env.get('gpu') or 'no GPU'}, {report.get('started', '')}",
        "",
        f"{counts.get('ok', 0)} ok, {counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped in "
        f"{_fmt(report.get('wall_s'))} s (budget {_fmt(report.get('budget_s'))} s). Command: "
        f"`{report.get('command', '')}`",
        "",
        *_md_machine(env),
        "",
        "## Checks",
        "",
        *_md_checks(results),
    ]
    for r in results:
        lines += _md_result(r)
    return "\n".join(lines).rstrip() + "\n"
