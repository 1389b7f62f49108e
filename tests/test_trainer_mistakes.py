"""The trainers' command lines, each mistake a row: one line naming the problem and the fix, exit status 2 (as
argparse answers), no traceback, no half-written file (docs/trainer_faults.md)."""
import json
import pickle

import pytest
import torch

from devkit.spoiled_files import rewritten
from devkit.tiny_models import TINY_CHECKPOINTS
from devkit.tiny_style_encoders import DEFAULT_STYLE_ENCODERS

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.hosts]
SD15_ENCODER = DEFAULT_STYLE_ENCODERS["sd15"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_models_dir):
    root = tmp_path_factory.mktemp("bad-trainer-input")
    from devkit.example_inputs import content_image, style_reference
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no images")
    (root / "images").mkdir()
    for i in range(2):
        style_reference(64, seed=i).save(root / "images" / f"{i}.png")
    style_reference(64).save(root / "style.png")
    content_image(64).save(root / "content.png")
    (root / "broken.png").write_bytes(b"not an image")
    (root / "model.ckpt.safetensors").write_bytes(pickle.dumps({"state_dict": {}}))
    (root / "a-file").write_text("not a folder")
    (root / "styles").mkdir()
    for i in range(2):
        style_reference(64, seed=i).save(root / "styles" / f"s{i}____{i}.png")
    (root / "tokens").mkdir()
    (root / "tokens" / "index-r0.json").write_text(json.dumps({i: {"shard": "s", "row": 0} for i in "ab"}))
    (root / "other-settings").mkdir()
    torch.save({"config": json.dumps({"seed": 7}), "step": 1}, root / "other-settings" / "checkpoint.pt")
    encoder = tiny_models_dir / "style_encoders" / SD15_ENCODER
    rewritten(encoder, root / "nan-encoder.safetensors", tensor_edit="backbone.")
    rewritten(encoder, root / "bad-json-encoder.safetensors", metadata_edit={"stylesmith.preprocess": "{not json"})
    return {"root": root, "checkpoint": tiny_models_dir / "checkpoints" / TINY_CHECKPOINTS["sd15"], "encoder": encoder}


def styleforge(f, out, *extra):
    return ["styleforge", "--checkpoint", str(f["checkpoint"]), "--styleref", str(f["root"] / "images"), "--aux",
            str(f["root"] / "images"), "--output-dir", str(out), "--resolution", "64", "--steps", "1",
            "--sample-steps", "0", *extra]


def osasis(f, out, *extra):
    return ["osasis.train", "--checkpoint", str(f["checkpoint"]), "--style", str(f["root"] / "style.png"), "--content",
            str(f["root"] / "images"), "--style-encoder", str(f["encoder"]), "--output-dir", str(out),
            "--resolution", "64", "--ddim-steps", "4", "--steps", "1", "--sampler-steps", "1",
            "--sdedit-candidates", "1", *extra]


TRAINER_CASES = {
    "StyleForge: folder without images": (lambda f, o: styleforge(f, o, "--styleref", str(f["root"] / "empty")),
                                          "has no usable image (no file ending in"),
    "StyleForge: pickled checkpoint": (lambda f, o: styleforge(f, o, "--checkpoint", str(f["root"] / "model.ckpt.safetensors")),
                                       "is not a readable safetensors file"),
    "StyleForge: a style encoder as checkpoint": (lambda f, o: styleforge(f, o, "--checkpoint", str(f["encoder"])),
                                                  "is not a checkpoint of a family StyleSmith serves (SD1.x and SDXL)"),
    "StyleForge: missing checkpoint": (lambda f, o: styleforge(f, o, "--checkpoint", str(f["root"] / "nope.safetensors")),
                                       "does not exist: pass the path of a .safetensors file"),
    "StyleForge: resolution not a multiple of 8": (lambda f, o: styleforge(f, o, "--resolution", "30"),
                                                   "--resolution must be a multiple of 8"),
    "StyleForge: zero steps": (lambda f, o: styleforge(f, o, "--steps", "0"), "--steps must be at least 1"),
    "OSASIS: t0 above one": (lambda f, o: osasis(f, o, "--t0", "1.5"), "--t0 must be in (0, 1]"),
    "OSASIS: no semantic code": (lambda f, o: [a for a in osasis(f, o) if a not in (
        "--style-encoder", str(f["encoder"]))], "OSASIS needs a semantic code z_sem for each image: pass --style-encoder"),
    "OSASIS: missing style image": (lambda f, o: osasis(f, o, "--style", str(f["root"] / "nope.png")),
                                    "does not exist: pass the path of an image file"),
    "OSASIS: broken style image": (lambda f, o: osasis(f, o, "--style", str(f["root"] / "broken.png")),
                                   "cannot be read as an image"),
    "OSASIS: negative learning rate": (lambda f, o: osasis(f, o, "--lr", "-1"), "--lr must be positive"),
    "style tokens stage 1: missing manifest": (lambda f, o: [
        "style_tokens.stage1", "--checkpoint", str(f["checkpoint"]), "--data", str(f["root"] / "nope.jsonl"),
        "--output-dir", str(o)], "does not exist"),
    "style tokens stage 2: holdout above one": (lambda f, o: [
        "style_tokens.stage2", "--data", str(f["root"] / "images"), "--tokens", str(o), "--output-dir", str(o),
        "--holdout", "2"], "--holdout must be between 0 and 1"),
    "StyleForge: output dir is a file": (lambda f, o: styleforge(f, o, "--output-dir", str(f["root"] / "a-file")),
                                         "is a file: give a folder"),
    "OSASIS: output dir is a file": (lambda f, o: osasis(f, o, "--output-dir", str(f["root"] / "a-file")),
                                     "is a file: give a folder"),
    "OSASIS: style encoder with malformed metadata": (lambda f, o: osasis(
        f, o, "--style-encoder", str(f["root"] / "bad-json-encoder.safetensors")),
        "bad-json-encoder.safetensors: the style encoder's metadata cannot be read"),
    "style tokens stage 1: output dir inside a file": (lambda f, o: [
        "style_tokens.stage1", "--checkpoint", str(f["checkpoint"]), "--data", str(f["root"] / "images"),
        "--output-dir", str(f["root"] / "a-file" / "tokens")], "a-file is a file, not a folder"),
    "style tokens stage 1: export name with a space": (lambda f, o: [
        "style_tokens.stage1", "--output-dir", str(o), "--export", "img", "--to", str(o / "my style.safetensors")],
        "is not a usable embedding name"),
    "style tokens stage 3: style encoder holding NaN weights": (lambda f, o: [
        "style_tokens.stage3", "--checkpoint", str(f["checkpoint"]), "--data", str(f["root"] / "styles"),
        "--encoder", str(f["root"] / "nan-encoder.safetensors"), "--output-dir", str(o)],
        "nan-encoder.safetensors: tensor backbone."),
    "OSASIS: style image is a folder": (lambda f, o: osasis(f, o, "--style", str(f["root"] / "images")),
                                        "The style image " + "{root}/images is a folder, not a file: pass the path of "
                                        "an image file."),
    "OSASIS: content folder is a file": (lambda f, o: osasis(f, o, "--content", str(f["root"] / "style.png")),
                                         "The content images folder {root}/style.png is a file, not a folder: pass a "
                                         "folder of images."),
    "StyleForge: missing Aux folder": (lambda f, o: styleforge(f, o, "--aux", str(f["root"] / "nope")),
                                       "Aux images of style folder {root}/nope does not exist: pass a folder of images."),
    "StyleForge: StyleRef folder is a file": (lambda f, o: styleforge(f, o, "--styleref", str(f["root"] / "style.png")),
                                              "folder {root}/style.png is a file, not a folder"),
    "style tokens stage 1: data is an image": (lambda f, o: [
        "style_tokens.stage1", "--checkpoint", str(f["checkpoint"]), "--data", str(f["root"] / "style.png"),
        "--output-dir", str(o)], "--data {root}/style.png is an image file: pass a folder of images, or a JSONL"),
    "style tokens stage 1: empty data folder": (lambda f, o: [
        "style_tokens.stage1", "--checkpoint", str(f["checkpoint"]), "--data", str(f["root"] / "empty"),
        "--output-dir", str(o)], "No usable example in {root}/empty"),
    "style tokens stage 1: export of an unknown id": (lambda f, o: [
        "style_tokens.stage1", "--output-dir", str(f["root"] / "tokens"), "--export", "nope", "--to", str(o / "x.safetensors")],
        "--export 'nope': no image with this id has tokens in {root}/tokens (2 have; e.g. 'a', 'b')"),
    "style tokens stage 1: export from an empty folder": (lambda f, o: [
        "style_tokens.stage1", "--output-dir", str(f["root"] / "empty"), "--export", "a", "--to",
        str(o / "x.safetensors")], "{root}/empty holds no stage-1 tokens (no index-r*.json): run stage 1"),
    "StyleForge: checkpoint.pt from other settings": (lambda f, o: styleforge(
        f, o, "--output-dir", str(f["root"] / "other-settings"), "--seed", "3"),
        "checkpoint.pt was written by a run with other settings (--seed 7 there, 3 now). Pass --no-resume to start "
        "over in this folder, or another --output-dir to keep that run."),
    "style tokens stage 3: resolution not a multiple of 8": (lambda f, o: [
        "style_tokens.stage3", "--checkpoint", str(f["checkpoint"]), "--data", str(f["root"] / "images"),
        "--encoder", str(f["encoder"]), "--output-dir", str(o), "--resolution", "30"],
        "--resolution must be a multiple of 8"),
}


@pytest.mark.parametrize("case", sorted(TRAINER_CASES))
def test_trainer_names_the_problem_in_one_line_with_status_2(case, files, tmp_path, capsys, monkeypatch):
    """As argparse answers a bad command line: `<prog>: error: <message>`, exit status 2, no traceback."""
    import importlib
    from trainers import cli
    monkeypatch.delenv(cli.DEBUG_VARIABLE, raising=False)
    make, message = TRAINER_CASES[case]
    trainer, *argv = make(files, tmp_path / "out")
    module = importlib.import_module(f"trainers.{trainer}")
    try:
        status = cli.run(module.main, module.parse_args, argv, locked_folder=lambda args: None)
    except SystemExit as e:      # argparse's own errors
        status = e.code
    err = capsys.readouterr().err
    assert status == 2 and message.format(root=files["root"]) in err, err
    assert "Traceback" not in err and "error: " in err
    assert not list(tmp_path.rglob("*.partial")) and not list(tmp_path.rglob(".*.partial"))
