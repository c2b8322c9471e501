import argparse

import pytest

from fmae.pretraining.train import TrainConfig
from fmae.runtime.config import add_config_args, config_from_args, to_yaml


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_config_args(parser, TrainConfig)
    return config_from_args(TrainConfig, parser.parse_args(argv))


def test_flags_override_yaml_which_overrides_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mask_ratio: 0.6\nbatch_size: 4\nnorm_pix_loss: true\n")
    cfg = _parse(["--config", str(path), "--batch-size", "2"])
    assert (cfg.mask_ratio, cfg.batch_size, cfg.norm_pix_loss, cfg.steps) == (0.6, 2, True, TrainConfig().steps)


def test_yaml_round_trip(tmp_path):
    cfg = TrainConfig(mask_strategy="tube", adv_weight=0.0)
    path = tmp_path / "c.yaml"
    path.write_text(to_yaml(cfg))
    assert _parse(["--config", str(path)]) == cfg


def test_bad_settings_are_clear_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mask_ration: 0.5\n")
    with pytest.raises(ValueError, match="unknown settings.*mask_ration"):
        _parse(["--config", str(path)])
    with pytest.raises(ValueError, match="mask_ratio"):
        TrainConfig(mask_ratio=1.5)
    with pytest.raises(ValueError, match="mask_strategy"):
        TrainConfig(mask_strategy="eyes")
    with pytest.raises(ValueError, match="multiple of 16"):
        TrainConfig(img_size=100)
    with pytest.raises(SystemExit):
        _parse(["--mask-strategy", "eyes"])


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], False),
        (["--norm-pix-loss"], True),
        (["--norm-pix-loss", "true"], True),
        (["--norm-pix-loss", "false"], False),
    ],
)
def test_bool_flags_are_switches_that_also_take_a_value(argv, expected):
    assert _parse(argv).norm_pix_loss is expected


def test_commands_report_bad_input_as_one_error_line(capsys):
    from fmae.runtime.cli import run_command

    def run(config, args):
        raise ValueError(f"no data at {config.data_root}")

    assert run_command(argparse.ArgumentParser(), TrainConfig, run, ["--data-root", "/nowhere"]) == 2
    assert capsys.readouterr().err == "error: no data at /nowhere\n"
    with pytest.raises(SystemExit):
        run_command(argparse.ArgumentParser(), TrainConfig, run, ["--norm-pix-loss", "maybe"])


def test_a_preset_sits_under_the_yaml_and_the_flags(tmp_path):
    paper = TrainConfig.PRESETS["paper"]
    cfg = _parse(["--preset", "paper"])
    assert {k: getattr(cfg, k) for k in paper} == paper and cfg.steps == TrainConfig().steps
    path = tmp_path / "c.yaml"
    path.write_text("img_size: 112\n")
    cfg = _parse(["--preset", "paper", "--config", str(path), "--mask-ratio", "0.8"])
    assert (cfg.model, cfg.img_size, cfg.mask_ratio, cfg.base_lr) == ("fmae_vit_base", 112, 0.8, 1.5e-4)
    assert _parse([]) == TrainConfig()  # no preset: the defaults
    with pytest.raises(SystemExit):
        _parse(["--preset", "papper"])
