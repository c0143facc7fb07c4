"""Typed configs: YAML < flags < key=value, unknown keys and bad values rejected with one line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from fairrec_ray.cli import ArgumentParser, write_json_atomic
from fairrec_ray.config import add_config_arguments, build_config, parse_overrides, read_yaml, resolve_config
from fairrec_ray.errors import ConfigError, FairrecError


@dataclass
class ToyConfig:
    dataset: str = field(default="synthetic", metadata={"help": "dataset name"})
    epochs: int = 2
    lr: float = 1e-3
    use_gpu: bool = False
    attribute: Literal["gender", "age"] = "gender"
    backbone: str | None = None
    attributes: tuple[str, ...] = ("gender",)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")


def parse(argv, tmp_path=None):
    parser = ArgumentParser(prog="toy")
    add_config_arguments(parser, ToyConfig)
    return resolve_config(ToyConfig, parser.parse_args(argv))


def test_precedence_yaml_then_flags_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\nlr: 0.01\nbackbone: /m\n")
    cfg = parse(["--config", str(path), "--epochs", "7", "lr=0.5", "use_gpu=true", "attributes=gender,age"])
    assert (cfg.epochs, cfg.lr, cfg.use_gpu, cfg.backbone) == (7, 0.5, True, "/m")
    assert cfg.attributes == ("gender", "age")
    assert parse(["--use-gpu", "backbone=none"]).use_gpu is True
    assert parse(["backbone=none"]).backbone is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["epochs=0"], "epochs must be >= 1, got 0"),
        (["epochs=two"], "epochs: got 'two'; expected int"),
        (["epochs=1.5"], "expected an integer"),
        (["attribute=race"], r"attribute: got 'race'; expected one of \['gender', 'age'\]"),
        (["learning_rate=3"], "unknown key 'learning_rate' for ToyConfig"),
        (["novalue"], "expected key=value"),
        (["use_gpu=maybe"], "expected true or false"),
    ],
)
def test_bad_values_name_key_and_rule(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse(argv)


def test_bad_yaml_reports_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: 3\nlr: [0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML at line \d+"):
        read_yaml(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        read_yaml(path)
    with pytest.raises(ConfigError, match="config file not found"):
        read_yaml(tmp_path / "missing.yaml")
    path.write_text("epochs: 3\nwat: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'wat'"):
        parse(["--config", str(path)])


def test_argparse_errors_become_one_line():
    with pytest.raises(FairrecError, match="unrecognized arguments: --nope"):
        parse(["--nope"])


def test_overrides_parse_yaml_scalars():
    assert parse_overrides(["a=1", "b=0.5", "c=true", "d=x"]) == {"a": 1, "b": 0.5, "c": True, "d": "x"}
    assert build_config(ToyConfig, {"lr": "1e-4"}).lr == pytest.approx(1e-4)


def test_write_json_atomic_replaces_whole_file(tmp_path):
    path = tmp_path / "out" / "results.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert path.read_text().strip().startswith("{") and '"a": 1' in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp file left behind


def test_cfp_backbone_settings_reach_p5_pretraining(tmp_path):
    """CFP's auto-trained backbone takes UP5's families and independent user ids when asked."""
    from fairrec_ray.cfp.backbone import p5_train_config
    from fairrec_ray.cfp.config import CFPConfig

    p5 = p5_train_config(CFPConfig(backbone_user_indexing="independent", backbone_prompts_per_user=30), tmp_path)
    assert (p5.user_indexing, p5.prompts_per_user) == ("independent", 30)
    assert p5_train_config(CFPConfig(), tmp_path).prompts_per_user == 0
