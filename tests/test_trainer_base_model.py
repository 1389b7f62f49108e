"""Every trainer with a frozen base model takes it the two ways users have one: a single-file checkpoint, or a
family's split files; a command line with both, or with neither, names both ways."""
import importlib

import pytest

TRAINERS = {
    "style_tokens.stage1": ["--data", "manifest.jsonl"],
    "style_tokens.stage3": ["--data", "manifest.jsonl", "--encoder", "enc.safetensors"],
    "styleforge": ["--styleref", "refs", "--aux", "aux"],
    "osasis.train": ["--style", "style.png", "--style-encoder", "enc.safetensors"],
}
SPLIT = ["--diffusion-model", "klein.safetensors", "--text-encoder", "qwen3.safetensors", "--vae", "taef2"]


def parse(trainer: str, tmp_path, *base) -> object:
    module = importlib.import_module(f"trainers.{trainer}")
    return module.parse_args([*TRAINERS[trainer], *base, "--output-dir", str(tmp_path / "out")])


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_split_files_are_a_base_model(trainer, tmp_path):
    args = parse(trainer, tmp_path, *SPLIT)
    assert args.checkpoint is None and args.diffusion_model.name == "klein.safetensors"
    assert [p.name for p in args.text_encoder] == ["qwen3.safetensors"] and args.vae == "taef2"


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
@pytest.mark.parametrize("base, message", [
    (["--checkpoint", "sd15.safetensors", *SPLIT], "not both"),
    ([], "the base model is required: --checkpoint (SD1.x, SDXL), or --diffusion-model, --text-encoder and --vae"),
    (["--diffusion-model", "klein.safetensors", "--vae", "taef2"], "--text-encoder and --vae"),
])
def test_a_base_model_given_both_ways_or_neither_names_both(trainer, base, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        parse(trainer, tmp_path, *base)
    assert raised.value.code == 2 and message in capsys.readouterr().err
