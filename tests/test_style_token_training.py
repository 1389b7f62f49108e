"""Style-token training data and stage 1: dataset validation, the synthetic set, inversion, shards."""
import json
import os
import subprocess
import sys

import pytest
import torch

from core.data.image_folder import DatasetError
from core.data.style_dataset import read_style_dataset
from core.data.synthetic_styles import write_synthetic_style_set
from core.formats.token_shards import load_tokens, read_index, read_loss_curves
from devkit.paths import REPO_ROOT
from trainers.style_tokens import stage1 as stage1
from trainers.precision import Precision


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_style_set(tmp_path_factory.mktemp("synthetic"), styles=3, contents=2, size=64, seed=3)


def test_synthetic_set_has_labelled_styles_that_differ(synthetic):
    dataset = read_style_dataset(synthetic)
    assert len(dataset.examples) == 6 and dataset.styles == ["style00", "style01", "style02"]
    assert all(e.caption.endswith("in the style of sks") for e in dataset.examples)
    from PIL import Image
    a, b = (Image.open(synthetic.parent / f"style0{k}____content000.png") for k in (0, 1))
    assert a.tobytes() != b.tobytes()
    folder_mode = read_style_dataset(synthetic.parent)
    assert {e.style for e in folder_mode.examples} == set(dataset.styles)


def test_dataset_problems_come_in_one_report(tmp_path, synthetic):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    good = synthetic.parent / "style00____content000.png"
    lines = [{"image": str(good), "caption": "a, in the style of sks", "style": "s"},
             {"image": str(good), "caption": "again", "style": "s"},
             {"image": "missing.png", "caption": "x", "style": "s"},
             {"image": "broken.png", "caption": "x", "style": "s"},
             {"image": str(synthetic.parent / "style01____content000.png"), "caption": " ", "style": "s"}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(l) for l in lines) + "\n{not json\n")
    dataset = read_style_dataset(manifest)
    assert len(dataset.examples) == 1
    report = "\n".join(dataset.problems)
    for expected in ("duplicate id", "missing.png is missing", "broken.png is unreadable", "empty caption", "line 6"):
        assert expected in report
    (tmp_path / "none.jsonl").write_text(json.dumps(lines[2]) + "\n")
    with pytest.raises(DatasetError, match="(?s)No usable example.*missing"):
        read_style_dataset(tmp_path / "none.jsonl")


def stage1_args(checkpoint, data, out, *extra, steps=2):
    return stage1.parse_args(["--checkpoint", str(checkpoint), "--data", str(data), "--output-dir", str(out),
                              "--resolution", "64", "--steps", str(steps), "--batch-size", "4", "--sample-steps", "0",
                              *extra])


def test_stage1_loss_on_fixed_noises_falls(tiny_checkpoint, synthetic):
    from comfy_adapter.diffusion import ComfyDiffusion
    from comfy_adapter.families import text_encoder_widths
    # The paper's lr 1e-3 barely moves this loss on the tiny random model in 50 steps; 0.03 reaches its floor
    # (about -20%: a random one-block UNet lets the context explain only so much of eps).
    args = stage1_args(tiny_checkpoint("sd15"), synthetic, "/unused", "--lr", "0.03", steps=50)
    diffusion = ComfyDiffusion(args.checkpoint, torch.device("cpu"))
    diffusion.allow_text_encoder_gradients()
    example = read_style_dataset(synthetic).examples[0]
    latents = diffusion.encode_images(stage1.load_images([example], 64))
    widths = text_encoder_widths(diffusion.clip)

    def fixed_loss(tokens):
        with torch.no_grad():
            return sum(stage1.batch_loss(diffusion, latents, [example.caption], tokens, "sks",
                                         [torch.Generator().manual_seed(1000 + s)]).item() for s in range(12)) / 12

    before = fixed_loss(stage1.init_tokens([example.id], widths, 8, 0.02, args.seed))
    tokens, _ = stage1.invert_batch(diffusion, Precision.resolve("fp32", diffusion.device), latents, [example.caption],
                                    [example.id], args, widths)
    after = fixed_loss(tokens)
    assert after <= 0.85 * before, f"fixed-set loss {before:.4f} -> {after:.4f}"


def test_stage1_writes_shards_resumes_and_exports(tiny_checkpoint, synthetic, tmp_path):
    out = tmp_path / "tokens"
    index = stage1.train(stage1_args(tiny_checkpoint("sd15"), synthetic, out, "--sample-steps", "1", steps=1))
    assert (out / "samples.png").is_file() and (out / "loss.png").is_file()
    ids = [e.id for e in read_style_dataset(synthetic).examples]
    assert sorted(index) == sorted(ids)
    tokens, metadata = load_tokens(out, ids)
    assert tokens["clip_l"].shape == (6, 8, 768) and metadata["stylesmith.family"] == "sd15"
    shards = sorted(p.name for p in out.glob("tokens-*.safetensors"))
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("tokens-*.safetensors")}
    stage1.train(stage1_args(tiny_checkpoint("sd15"), synthetic, out, steps=1))
    assert sorted(p.name for p in out.glob("tokens-*.safetensors")) == shards
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items()), "a resumed run must skip finished images"
    embedding = tmp_path / "one.safetensors"
    stage1.main(stage1.parse_args(["--output-dir", str(out), "--export", ids[0], "--to", str(embedding)]))
    from core.formats.embedding_file import read_embedding
    assert torch.equal(read_embedding(embedding)["clip_l"], tokens["clip_l"][0])


def test_stage1_under_two_ranks_covers_every_image_once(tiny_checkpoint, synthetic, tmp_path):
    out = tmp_path / "tokens"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m",
                           "trainers.style_tokens.stage1", "--checkpoint", str(tiny_checkpoint("sd15")), "--data",
                           str(synthetic), "--output-dir", str(out), "--resolution", "64", "--steps", "1",
                           "--batch-size", "2", "--sample-steps", "0"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    per_rank = [json.loads((out / f"index-r{r}.json").read_text()) for r in (0, 1)]
    ids = sorted(e.id for e in read_style_dataset(synthetic).examples)
    assert per_rank[0] and per_rank[1] and not set(per_rank[0]) & set(per_rank[1])
    assert sorted(read_index(out)) == ids


def test_stage2_writes_an_encoder_the_nodes_load(tiny_checkpoint, synthetic, tmp_path, comfy_in_process):
    from trainers.style_tokens import stage2 as stage2
    tokens = tmp_path / "tokens"
    stage1.train(stage1_args(tiny_checkpoint("sd15"), synthetic, tokens, steps=1))
    out = comfy_in_process.base_dir / "models" / "style_encoders"
    args = stage2.parse_args(["--data", str(synthetic), "--tokens", str(tokens), "--output-dir", str(tmp_path / "enc"),
                              "--architecture", "StyleSmith-Tiny-ViT", "--random-init", "--steps", "4", "--contrastive-weight", "0.5",
                              "--holdout", "0.34"])
    metrics = stage2.train(args)
    assert metrics["held_out_images"] == 2 and metrics["mean_token_baseline_mse"] > 0
    for picture in ("loss.png", "embedding_map.png", "metrics.json", "checkpoint.pt"):
        assert (tmp_path / "enc" / picture).is_file()
    out.mkdir(parents=True, exist_ok=True)
    (out / "stage2-test.safetensors").write_bytes((tmp_path / "enc" / "style_encoder.safetensors").read_bytes())
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "stylesmith-tiny-sd15.safetensors"}},
        "2": {"class_type": "StyleSmithStyleEncoderLoader", "inputs": {"encoder_name": "stage2-test.safetensors"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "stylesmith-style-reference.png"}},
        "4": {"class_type": "StyleSmithImageToStyleTokens",
              "inputs": {"style_encoder": ["2", 0], "image": ["3", 0], "batch_mode": "per image"}},
        "5": {"class_type": "StyleSmithEncodePromptWithStyle",
              "inputs": {"clip": ["1", 1], "style_tokens": ["4", 0], "text": "a boat, sks", "placeholder": "sks"}},
    }
    out_nodes = comfy_in_process.run(graph, outputs_of=("2", "5"))
    assert out_nodes["2"][0].config.training["stage"] == 2
    assert out_nodes["5"][0][0][0].shape == (1, 77, 768)


def test_supervised_contrastive_prefers_features_grouped_by_label():
    from trainers.style_tokens.stage2 import supervised_contrastive
    labels = torch.tensor([0, 0, 1, 1])
    grouped = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    mixed = grouped[[0, 2, 1, 3]]
    assert supervised_contrastive(grouped, labels, 0.1) < supervised_contrastive(mixed, labels, 0.1)


def test_knn_accuracy_and_the_retrieval_table(tmp_path, synthetic):
    from evaluation.style_eval import knn_accuracy, main, parse_args
    clustered = torch.tensor([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0], [0.2, 0.9], [-1.0, 0.1], [-0.9, -0.1]])
    labels = ["a", "a", "b", "b", "c", "c"]
    assert knn_accuracy(clustered, labels, k=1) == 1.0
    assert knn_accuracy(clustered, ["a", "b", "c", "a", "b", "c"], k=1) == 0.0
    from core.formats.style_encoder_file import save_style_encoder
    from devkit.tiny_style_encoders import build_style_encoder
    encoder = build_style_encoder("sd15", seed=1)
    save_style_encoder(encoder, tmp_path / "enc.safetensors")
    results = main(parse_args(["--data", str(synthetic), "--encoder", str(tmp_path / "enc.safetensors"), "--k", "1"]))
    assert set(results) == {"style encoder (tokens)", "raw backbone (pooled)", "Gram matrices", "chance"}
    assert results["chance"] == pytest.approx(1 / 3)
    # the encoder's row, recomputed here: its tokens of each image (read with PIL), against that image's own label
    import numpy as np
    from PIL import Image
    from core.data.image_preprocess import preprocess
    entries = [json.loads(line) for line in synthetic.read_text().splitlines()]
    images = torch.cat([torch.from_numpy(np.asarray(Image.open(synthetic.parent / e["image"]).convert("RGB"),
                                                    dtype=np.float32) / 255)[None] for e in entries])
    with torch.no_grad():
        tokens = encoder(preprocess(images, encoder.config.preprocess))
    features = torch.cat([tokens[head].flatten(1) for head in tokens], dim=1)
    labels = [e["style"] for e in entries]
    assert results["style encoder (tokens)"] == knn_accuracy(features, labels, k=1)
    assert results["style encoder (tokens)"] != knn_accuracy(features, labels[1:] + labels[:1], k=1), \
        "labels one image off would score the same: the check could not tell"
    rows = (tmp_path / "style_retrieval.csv").read_text().splitlines()
    assert rows == ["features,knn@1 style accuracy"] + [f"{name},{value:.4f}" for name, value in results.items()]


def test_stage1_batched_equals_one_image_at_a_time(tiny_checkpoint, synthetic, tmp_path):
    """A batch goes through the UNet in one pass, each image with its own tokens, noise and t: every image's tokens
    come out as when it is inverted alone."""
    stage1.train(stage1_args(tiny_checkpoint("sd15"), synthetic, tmp_path / "batched", "--batch-size", "6", steps=3))
    stage1.train(stage1_args(tiny_checkpoint("sd15"), synthetic, tmp_path / "alone", "--batch-size", "1", steps=3))
    ids = [e.id for e in read_style_dataset(synthetic).examples]
    batched, _ = load_tokens(tmp_path / "batched", ids)
    alone, _ = load_tokens(tmp_path / "alone", ids)
    assert len({r["shard"] for r in read_index(tmp_path / "batched").values()}) == 1
    defaults = stage1_args(tiny_checkpoint("sd15"), synthetic, tmp_path / "unused")
    start = stage1.init_tokens(ids, {"clip_l": 768}, defaults.n_tokens, defaults.init_std, defaults.seed)["clip_l"]
    assert (alone["clip_l"] - start).abs().max() > 1e-4, "the inversion moved the tokens"
    assert (batched["clip_l"] - alone["clip_l"]).abs().max() <= 1e-5


@pytest.fixture(scope="module")
def uninterrupted_tokens(tiny_checkpoint, synthetic, tmp_path_factory):
    """(the folder, the tokens) of stage 1 in one go, which every interrupted and resumed run must end with."""
    straight = tmp_path_factory.mktemp("straight")
    stage1.train(stage1_args(tiny_checkpoint("sd15"), synthetic, straight, "--batch-size", "2", steps=3))
    return straight, load_tokens(straight, [e.id for e in read_style_dataset(synthetic).examples])[0]


def stage1_command(tiny_checkpoint, synthetic, out) -> list[str]:
    return [sys.executable, "-m", "trainers.style_tokens.stage1", "--checkpoint", str(tiny_checkpoint("sd15")),
            "--data", str(synthetic), "--output-dir", str(out), "--resolution", "64", "--steps", "3",
            "--batch-size", "2", "--sample-steps", "0"]


def test_stage1_ctrl_c_keeps_the_finished_batches_and_resumes_bit_identically(tiny_checkpoint, synthetic,
                                                                              uninterrupted_tokens, tmp_path):
    import signal
    from devkit.processes import signal_when_written
    stopped = tmp_path / "stopped"
    command = stage1_command(tiny_checkpoint, synthetic, stopped)
    status = signal_when_written(command, stopped / "index-r0.json", signal.SIGINT, tmp_path / "stderr.txt")
    err = (tmp_path / "stderr.txt").read_text()
    assert status == 130 and 2 <= len(read_index(stopped)) < 6, err
    assert f"stopped by Ctrl-C (SIGINT); the finished batches are kept in {stopped}, the batch in progress (2 images) " \
           "is dropped. Run the same command again to resume with it." in err and "Traceback" not in err
    assert not list(stopped.glob(".*partial")) and not (stopped / ".stylesmith-run.lock").exists()
    stage1.train(stage1.parse_args(command[3:]))
    resumed, _ = load_tokens(stopped, [e.id for e in read_style_dataset(synthetic).examples])
    assert (resumed["clip_l"] - uninterrupted_tokens[1]["clip_l"]).abs().max() <= 1e-6


def test_stage1_kill_and_resume_ends_with_the_uninterrupted_tokens(tiny_checkpoint, synthetic, uninterrupted_tokens,
                                                                   tmp_path):
    from devkit.processes import kill_when_written
    interrupted, (straight, uninterrupted) = tmp_path / "interrupted", uninterrupted_tokens
    command = stage1_command(tiny_checkpoint, synthetic, interrupted)
    kill_when_written(command, interrupted / "index-r0.json")
    finished_before_kill = len(read_index(interrupted))
    assert 2 <= finished_before_kill < 6, "the kill must land between the first and the last batch"
    stage1.train(stage1.parse_args(command[3:]))
    ids = [e.id for e in read_style_dataset(synthetic).examples]
    resumed, _ = load_tokens(interrupted, ids)
    assert (resumed["clip_l"] - uninterrupted["clip_l"]).abs().max() <= 1e-6
    assert not list(interrupted.glob(".*partial"))
    curves, straight_curves = read_loss_curves(interrupted), read_loss_curves(straight)
    assert list(curves) == list(straight_curves) and len(curves) == 3, "loss.png covers the run before the kill too"
    assert all(abs(a - b) <= 1e-5 for shard in curves for a, b in zip(curves[shard], straight_curves[shard]))


def test_stage3_moves_the_encoder_through_the_text_encoder_and_unet(tiny_checkpoint, synthetic, tmp_path):
    from core.formats.style_encoder_file import load_style_encoder, save_style_encoder
    from devkit.tiny_style_encoders import build_style_encoder
    from trainers.style_tokens import stage3 as stage3
    start = tmp_path / "start.safetensors"
    save_style_encoder(build_style_encoder("sd15", seed=2), start)
    stage3.train(stage3.parse_args(["--checkpoint", str(tiny_checkpoint("sd15")), "--data", str(synthetic),
                                    "--encoder", str(start), "--output-dir", str(tmp_path / "out"), "--resolution", "64",
                                    "--steps", "2", "--batch-size", "2", "--lr", "1e-3", "--sample-steps", "1"]))
    before, after = load_style_encoder(start), load_style_encoder(tmp_path / "out" / "style_encoder.safetensors")
    assert after.config.training["stage"] == 3
    changed = [k for k, v in after.state_dict().items() if not torch.equal(v, before.state_dict()[k])]
    assert any(k.startswith("heads.") for k in changed) and any(k.startswith("backbone.") for k in changed)
    for picture in ("loss.png", "embedding_map.png", "samples.png"):
        assert (tmp_path / "out" / picture).is_file()


def stage3_fixed_noise_losses(diffusion, data, start, trained) -> tuple[float, float]:
    """Stage 3's held-out check: the diffusion loss of an encoder's tokens on the training images under 8 noise and
    sigma draws fixed by seeds 500-507, for the start encoder and the trained one."""
    from core.data.image_preprocess import preprocess
    from core.formats.style_encoder_file import load_style_encoder
    from trainers.style_tokens import stage3
    examples = read_style_dataset(data).examples
    images = stage1.load_images(examples, 64, workers=0)
    latents = diffusion.encode_images(images)

    def fixed_loss(path) -> float:
        encoder = load_style_encoder(path).eval()
        pixels = preprocess(images, encoder.config.preprocess)
        with torch.no_grad():
            return sum(stage3.style_loss(diffusion, encoder, pixels, latents, [e.caption for e in examples], "sks",
                                         torch.Generator().manual_seed(500 + s)).item() for s in range(8)) / 8

    return fixed_loss(start), fixed_loss(trained)


def test_stage3_lowers_the_diffusion_loss_on_fixed_noises(tiny_checkpoint, synthetic, tmp_path):
    """Not merely moved weights: the diffusion loss of the encoder's tokens, on the training images with fixed
    noises and timesteps, is lower after stage 3 than before."""
    from comfy_adapter.diffusion import ComfyDiffusion
    from core.formats.style_encoder_file import save_style_encoder
    from devkit.tiny_style_encoders import build_style_encoder
    from trainers.style_tokens import stage3 as stage3
    start = tmp_path / "start.safetensors"
    save_style_encoder(build_style_encoder("sd15", seed=2), start)
    stage3.train(stage3.parse_args(["--checkpoint", str(tiny_checkpoint("sd15")), "--data", str(synthetic),
                                    "--encoder", str(start), "--output-dir", str(tmp_path / "out"), "--resolution", "64",
                                    "--steps", "30", "--batch-size", "3", "--lr", "3e-3", "--sample-steps", "0",
                                    "--workers", "0"]))
    diffusion = ComfyDiffusion(tiny_checkpoint("sd15"), torch.device("cpu"))
    trained = tmp_path / "out" / "style_encoder.safetensors"
    before, after = stage3_fixed_noise_losses(diffusion, synthetic, start, trained)
    assert after <= 0.95 * before, f"fixed-noise loss {before:.4f} -> {after:.4f}"


def test_trainer_and_node_condition_identically(comfy_in_process, tiny_checkpoint):
    from comfy_adapter.diffusion import ComfyDiffusion, encode_prompt_with_style
    from core.style_tokens.tokens import StyleTokens
    diffusion = ComfyDiffusion(tiny_checkpoint("sd15"), torch.device("cpu"))
    vectors = {"clip_l": torch.randn(8, 768, generator=torch.Generator().manual_seed(0)) * 0.02}
    text = "a harbour at dawn, in the style of sks"
    with torch.no_grad():
        trainer_cond, trainer_pooled = encode_prompt_with_style(diffusion, text, vectors, "sks")
    node = comfy_in_process.node_classes["StyleSmithEncodePromptWithStyle"]
    (node_cond, node_extra), = node.execute(clip=diffusion.clip, style_tokens=StyleTokens(
        {"clip_l": vectors["clip_l"][None]}, "sd15"), text=text, placeholder="sks")[0]
    assert torch.equal(trainer_cond, node_cond) and torch.equal(trainer_pooled, node_extra["pooled_output"])


def test_contrastive_term_makes_a_small_encoder_retrieve_styles_of_unseen_contents(tiny_checkpoint, tmp_path):
    """Stage-1 tokens from a random UNet carry no style; the style-label term is what teaches it."""
    from evaluation import style_eval
    from trainers.style_tokens import stage2
    manifest = write_synthetic_style_set(tmp_path / "set", styles=4, contents=40, size=64, seed=7)
    lines = manifest.read_text().splitlines()
    content = [int(json.loads(line)["image"].split("content")[1][:3]) for line in lines]
    train, test = manifest.parent / "train.jsonl", manifest.parent / "test.jsonl"   # unseen contents in test
    train.write_text("\n".join(line for line, c in zip(lines, content) if c < 30) + "\n")
    test.write_text("\n".join(line for line, c in zip(lines, content) if c >= 30) + "\n")
    stage1.train(stage1_args(tiny_checkpoint("sd15"), train, tmp_path / "tokens", "--batch-size", "40", steps=1))
    accuracy = {}
    for weight in ("0", "1"):
        stage2.train(stage2.parse_args(["--data", str(train), "--tokens", str(tmp_path / "tokens"),
                                        "--output-dir", str(tmp_path / f"enc{weight}"), "--architecture",
                                        "StyleSmith-Tiny-ViT", "--random-init", "--steps", "300", "--batch-size", "32", "--lr", "3e-3",
                                        "--contrastive-weight", weight, "--holdout", "0.05"]))
        accuracy[weight] = style_eval.main(style_eval.parse_args(
            ["--data", str(test), "--encoder", str(tmp_path / f"enc{weight}" / "style_encoder.safetensors")]))
    assert accuracy["1"]["style encoder (tokens)"] >= 0.9
    assert accuracy["1"]["style encoder (tokens)"] > accuracy["0"]["style encoder (tokens)"]
    assert accuracy["1"]["style encoder (tokens)"] > accuracy["1"]["raw backbone (pooled)"]


def stage2_argv(tmp_path, *extra) -> list[str]:
    return ["--data", str(tmp_path), "--tokens", str(tmp_path), "--output-dir", str(tmp_path / "out"), *extra]


def test_stage2_backbone_starts_from_a_local_open_clip_checkpoint(tmp_path):
    from safetensors.torch import save_file
    from core.style_tokens.clip_backbones import TINY_VIT, open_clip_with_configs
    from trainers.style_tokens import stage2 as stage2
    model = open_clip_with_configs().create_model(TINY_VIT)
    torch.manual_seed(3)
    for p in model.parameters():
        p.data.normal_()
    save_file({k: v.clone().contiguous() for k, v in model.state_dict().items()}, tmp_path / "tiny-clip.safetensors")
    args = stage2.parse_args(stage2_argv(tmp_path, "--architecture", TINY_VIT,
                                         "--pretrained", str(tmp_path / "tiny-clip.safetensors")))
    got = stage2.build_encoder(args, "sd15", {"clip_l": 768}, 8).backbone.state_dict()
    expected = {k: v for k, v in model.visual.state_dict().items() if k != "proj"}
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert stage2.backbone_source(args) == f"pretrained {tmp_path / 'tiny-clip.safetensors'}"


def test_stage2_is_pretrained_by_default_and_offline_names_every_way_out(tmp_path):
    from trainers.style_tokens import stage2 as stage2
    assert stage2.parse_args(stage2_argv(tmp_path)).pretrained == "openai"
    code = ("import sys; from trainers.style_tokens.stage2 import parse_args, build_encoder; "
            "build_encoder(parse_args(sys.argv[1:]), 'sd15', {'clip_l': 768}, 8)")
    done = subprocess.run([sys.executable, "-c", code, *stage2_argv(tmp_path, "--architecture", "ViT-B-32")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode != 0
    for way_out in ("--init-clip-vision FILE", "--pretrained PATH", "--random-init", "Cannot load open_clip's pretrained"):
        assert way_out in done.stderr, done.stderr[-2000:]
