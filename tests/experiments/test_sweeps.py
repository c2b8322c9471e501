import dataclasses
import json

import pytest
import torch

import fmae.experiments.cells
import fmae.experiments.sweeps
from fmae.ablate import main
from fmae.experiments.sweeps import AblationConfig, make_cells, parse_values, save_plot, sweep_rows, sweep_table
from fmae.pretraining.step import ADV_WEIGHT

# Tiny cells on the session's 32×32 synthetic set: 4 frames, 2 steps, 2 probe epochs.
TINY = [
    "--img-size",
    "32",
    "--num-frames",
    "4",
    "--steps",
    "2",
    "--batch-size",
    "2",
    "--probe-epochs",
    "2",
    "--dtype",
    "fp32",
    "--device",
    "cpu",
    "--num-workers",
    "0",
    "--no-progress",
]


@pytest.fixture(autouse=True)
def _one_thread():
    # The cells' tensors are tiny: one thread beats several fighting over a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(sweep, small_set, out, *extra):
    return main([sweep, "--data-root", str(small_set), "--out-dir", str(out), *TINY, *extra])


def _table(md_text):
    """Header and body rows of the first Markdown table, as lists of cells."""
    lines = [line for line in md_text.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return split[0], split[2:]


def _outputs(out, sweep):
    md, summary = (out / f"{sweep}.md").read_text(), json.loads((out / f"{sweep}.json").read_text())
    assert (out / f"{sweep}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return md, summary


def _forbid_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr(fmae.experiments.cells, "pretrain", fail)
    monkeypatch.setattr(fmae.experiments.sweeps, "run_probe", fail)


def test_ratio_sweep_end_to_end_and_rerun_skips_finished_cells(small_set, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ablate"
    assert _run("ratio", small_set, out, "--values", "0.5,0.9") == 0
    assert str(out / "ratio.md") in capsys.readouterr().out
    md, summary = _outputs(out, "ratio")
    head, rows = _table(md)
    assert head == ["masking ratio", "accuracy (%)", "precision", "recall", "F1"]
    assert [r[0] for r in rows] == ["0.5", "0.9"]
    assert [r["mask_ratio"] for r in summary["rows"]] == [0.5, 0.9]
    for row in summary["rows"]:
        assert 0 <= row["accuracy"] <= 100 and 0 <= row["f1"] <= 1 and row["seeds"] == 1
        assert row["adv_weight"] == ADV_WEIGHT and row["mask_strategy"] == "facial"
    assert 0 <= summary["reference"]["accuracy"] <= 100
    # Each cell really pre-trained with its ratio and probed its own checkpoint.
    for cell in summary["cells"]:
        config = fmae.experiments.sweeps.Path(cell["checkpoint"]).parents[1] / "config.yaml"
        assert f"mask_ratio: {cell['value']}" in config.read_text()
        assert json.loads((fmae.experiments.sweeps.Path(cell["probe_dir"]) / "metrics.json").read_text())[
            "encoder"
        ] == str(fmae.experiments.sweeps.Path(cell["checkpoint"]).resolve())

    # A cell killed after pre-training but before its result resumes from its checkpoint, trains no more, probes again.
    first = summary["cells"][0]
    (fmae.experiments.sweeps.Path(first["probe_dir"]).parent / "result.json").unlink()
    real_pretrain, calls = fmae.experiments.cells.pretrain, []

    def resumed_pretrain(config, resume=False, progress=True):
        calls.append(resume)
        return real_pretrain(config, resume=resume, progress=progress)

    monkeypatch.setattr(fmae.experiments.cells, "pretrain", resumed_pretrain)
    assert _run("ratio", small_set, out, "--values", "0.5,0.9") == 0
    assert calls == [True]
    again = json.loads((out / "ratio.json").read_text())
    assert again["cells"][0]["checkpoint"] == first["checkpoint"]
    assert again["cells"][0]["accuracy"] == first["accuracy"] and again["cells"][1:] == summary["cells"][1:]

    _forbid_training(monkeypatch)
    before = (out / "ratio.json").read_text()
    assert _run("ratio", small_set, out, "--values", "0.5,0.9") == 0
    assert (out / "ratio.json").read_text() == before
    # Other settings are other cells, not the finished ones.
    with pytest.raises(AssertionError, match="run again"):
        _run("ratio", small_set, out, "--values", "0.5,0.9", "--steps", "3")


def test_stride_sweep_keeps_the_span_and_reports_cost(small_set, tmp_path):
    out = tmp_path / "ablate"
    assert _run("stride", small_set, out, "--values", "1,2") == 0  # span 4 frames × stride 2 = 8 video frames
    md, summary = _outputs(out, "stride")
    head, rows = _table(md)
    assert head == [
        "temporal stride",
        "frames per clip",
        "accuracy (%)",
        "precision",
        "recall",
        "F1",
        "encoder GFLOPs / clip",
        "pre-training GFLOPs / clip",
        "pre-training clips/s",
    ]
    assert [(r[0], r[1]) for r in rows] == [("1", "8"), ("2", "4")]
    fine, coarse = summary["rows"]
    assert (fine["num_frames"], coarse["num_frames"]) == (8, 4)
    # Twice the tokens: more than twice the encoder FLOPs (attention is quadratic).
    assert fine["encoder_gflops"] > 2 * coarse["encoder_gflops"] > 0
    assert fine["pretrain_gflops"] > coarse["pretrain_gflops"] > 0
    assert fine["clips_per_s"] > 0 and coarse["clips_per_s"] > 0


def test_strategy_sweep_crosses_strategies_with_losses(small_set, tmp_path):
    out = tmp_path / "ablate"
    assert _run("strategy", small_set, out, "--values", "tube,facial") == 0
    md, summary = _outputs(out, "strategy")
    head, rows = _table(md)
    assert f"{summary['reference']['eval_videos']} test videos: one video moves the accuracy" in md
    assert head == ["masking strategy", "RL", "AL", "accuracy (%)", "precision", "recall", "F1", "paper accuracy (%)"]
    assert [r[:3] + r[-1:] for r in rows] == [
        ["Tube", "✓", "", "61.69"],
        ["Tube", "", "✓", "60.83"],
        ["Tube", "✓", "✓", "62.98"],
        ["Facial", "✓", "", "63.79"],
        ["Facial", "", "✓", "63.64"],
        ["Facial", "✓", "✓", "64.74"],
    ]
    assert [(r["mask_strategy"], r["adv_weight"], r["rec_weight"]) for r in summary["rows"]] == [
        ("tube", 0.0, 1.0),
        ("tube", ADV_WEIGHT, 0.0),
        ("tube", ADV_WEIGHT, 1.0),
        ("facial", 0.0, 1.0),
        ("facial", ADV_WEIGHT, 0.0),
        ("facial", ADV_WEIGHT, 1.0),
    ]
    # Without the adversarial loss there is no discriminator, so no discriminator loss is logged;
    # with the adversarial loss alone the logged total is λ·L_adv.
    for cell in summary["cells"]:
        log = [
            json.loads(line)
            for line in (fmae.experiments.sweeps.Path(cell["checkpoint"]).parents[1] / "metrics.jsonl")
            .read_text()
            .splitlines()
        ]
        assert ("disc_loss" in log[-1]) == (cell["losses"] != "RL")
        if cell["losses"] == "AL":
            assert log[-1]["loss"] == pytest.approx(ADV_WEIGHT * log[-1]["adv_loss"], rel=1e-5)


def test_summarise_means_and_deviations_over_seeds():
    cells = [
        {
            "value": 0.5,
            "losses": "RL+AL",
            "seed": s,
            "mask_strategy": "facial",
            "mask_ratio": 0.5,
            "temporal_stride": 2,
            "num_frames": 4,
            "adv_weight": 0.1,
            "accuracy": acc,
            "clips_per_s": None,
        }
        for s, acc in enumerate([40.0, 50.0, 60.0])
    ]
    cells.append({**cells[0], "value": 0.9, "mask_ratio": 0.9, "accuracy": 70.0})
    rows = sweep_rows(cells)
    assert [r["value"] for r in rows] == [0.5, 0.9]
    assert rows[0]["seeds"] == 3 and rows[0]["accuracy"] == pytest.approx(50.0)
    assert rows[0]["accuracy_std"] == pytest.approx(10.0)
    assert rows[1]["seeds"] == 1 and rows[1]["accuracy_std"] == 0.0
    assert "clips_per_s" not in rows[0]


def test_regression_tables_report_mse(tmp_path):
    config = AblationConfig(task="emotiw", img_size=32, num_frames=4)
    cells = [
        {
            "value": v,
            "losses": "RL+AL",
            "seed": 0,
            "mask_strategy": "facial",
            "mask_ratio": v,
            "temporal_stride": 2,
            "num_frames": 4,
            "adv_weight": 0.1,
            "mse": mse,
            "baseline": 0.09,
        }
        for v, mse in ((0.5, 0.071), (0.9, 0.063))
    ]
    rows = sweep_rows(cells)
    head, body = _table(sweep_table("ratio", rows, {"mse": 0.08, "baseline": 0.09}, config))
    assert head == ["masking ratio", "MSE"] and body == [["0.5", "0.0710"], ["0.9", "0.0630"]]
    png = save_plot("ratio", rows, {"mse": 0.08, "baseline": 0.09}, config, tmp_path / "ratio.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cells_are_named_by_what_shapes_their_result():
    config = AblationConfig(img_size=32, num_frames=4, seeds=2, values="0.5,0.9")
    cells = make_cells("ratio", config)
    assert [(c.value, c.seed) for c in cells] == [(0.5, 0), (0.5, 1), (0.9, 0), (0.9, 1)]
    assert len({c.folder for c in cells}) == 4
    same = make_cells("ratio", dataclasses.replace(config, device="cpu", num_workers=0))
    assert [c.folder for c in same] == [c.folder for c in cells]
    more = make_cells("ratio", dataclasses.replace(config, steps=200))
    assert not {c.folder for c in more} & {c.folder for c in cells}
    # The base settings' cell (ratio 0.9, stride 2, facial with both losses) is one cell for all sweeps.
    base = dataclasses.replace(config, seeds=1, values="", num_frames=8)
    wanted = (0.9, 2, 8, "facial", "RL+AL")
    shared = [
        [
            c.folder
            for c in make_cells(sweep, base)
            if (c.train.mask_ratio, c.train.temporal_stride, c.train.num_frames, c.train.mask_strategy, c.losses)
            == wanted
        ]
        for sweep in ("ratio", "stride", "strategy")
    ]
    assert shared[0] == shared[1] == shared[2] and len(shared[0]) == 1


@pytest.mark.parametrize(
    "sweep, values, message",
    [
        ("ratio", ",", "no values"),
        ("ratio", "0.5,1.5", r"in \(0, 1\)"),
        ("ratio", "0,0.5", r"in \(0, 1\)"),
        ("ratio", "half", "numbers"),
        ("ratio", "0.5,0.5", "repeat"),
        ("stride", "3", "even number of frames"),  # 8 video frames do not split by 3
        ("stride", "8", "even number of frames"),  # one frame: no tubelet of 2
        ("strategy", "facial,eyes", "unknown masking strategy"),
    ],
)
def test_bad_values_are_clear_errors(sweep, values, message, capsys):
    config = AblationConfig(img_size=32, num_frames=4)
    with pytest.raises(ValueError, match=message):
        parse_values(sweep, values, config)
    assert main([sweep, "--values", values, "--img-size", "32", "--num-frames", "4", "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_unknown_sweep_and_bad_settings(capsys):
    with pytest.raises(ValueError, match="unknown sweep"):
        parse_values("depth", "", AblationConfig())
    with pytest.raises(SystemExit) as exit_info:
        main(["depth"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
    for bad in (["--seeds", "0"], ["--mask-ratio", "1.0"], ["--img-size", "40"], ["--adv-weight", "0"]):
        assert main(["ratio", *bad, "--no-progress"]) == 2
        assert capsys.readouterr().err.startswith("error: ")


def test_help_lists_the_sweeps_and_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "{ratio,stride,strategy}" in text and "Examples:" in text and "--seeds" in text
