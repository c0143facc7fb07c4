"""Bad arguments to ``python -m fairrec_ray.train_cfp``: one clear line, exit 2, nothing written."""

from __future__ import annotations

import pytest
from cli_helpers import assert_one_line_error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attribute", "religion"], "unknown attribute 'religion'"),
        (["--discriminator-weight", "-1"], "discriminator_weight: got -1.0; expected >= 0"),
        (["--backbone", "/nonexistent/p5"], "backbone: got '/nonexistent/p5'; expected a P5 model folder"),
        (["prefix_length=0"], "prefix_length: got 0; expected >= 1"),
        (["colour=red"], "unknown key 'colour'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, message):
    out = tmp_path / "out"
    assert_one_line_error(["fairrec_ray.train_cfp", "--output", str(out), *args], message)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompts", "gender=PROMPT"], "a mixture needs >= 2 attribute prompts"),
        (["--prompts", "gender=PROMPT", "gender=PROMPT"], "attribute 'gender' given twice"),
        (["--prompts", "gender", "age=PROMPT"], "expected ATTRIBUTE=DIR"),
        (["--prompts", "gender=/nonexistent", "age=PROMPT"], "/nonexistent is not a CFP prompt folder"),
        (["--prompts", "gender=PROMPT", "religion=PROMPT"], "unknown attribute 'religion'"),
    ],
)
def test_mixture_cli_bad_arguments_exit_2_with_one_line(tmp_path, args, message):
    prompt = tmp_path / "prompt"
    prompt.mkdir()
    (prompt / "encoder_prefix_config.json").write_text("{}")
    backbone = tmp_path / "backbone"
    backbone.mkdir()
    (backbone / "config.json").write_text("{}")
    out = tmp_path / "out"
    args = [a.replace("PROMPT", str(prompt)) for a in args]
    assert_one_line_error(
        ["fairrec_ray.train_cfp_mixture", "--backbone", str(backbone), "--output", str(out), *args], message
    )
    assert not out.exists()
