"""The evaluation's side of a running ComfyUI: the shipped client (evaluation/comfy_client.py) on its own against a
server (uploads land where LoadImage finds them, results come back as PNG bytes, an address with no ComfyUI says
so), `--comfyui-url`, and where model names are looked up without the test harness."""
import io

import numpy as np
import pytest
from PIL import Image

from devkit.server import free_port
from evaluation.comfy_client import ComfyClient, ComfyUIError
from evaluation.evaluate import model_file, parse_args

pytestmark = [pytest.mark.server, pytest.mark.hosts]


def test_an_uploaded_image_is_what_load_image_reads(comfy_server, tmp_path):
    client = ComfyClient(comfy_server.url + "/")
    colour = (200, 40, 90)
    Image.new("RGB", (12, 10), colour).save(tmp_path / "first.png")
    Image.new("RGB", (12, 10), (0, 0, 0)).save(tmp_path / "second.png")
    client.upload_image(tmp_path / "second.png", "probe.png", "stylesmith-client-test")
    name = client.upload_image(tmp_path / "first.png", "probe.png", "stylesmith-client-test")   # replaces it
    assert name == "stylesmith-client-test/probe.png"
    result = client.run({"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                         "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
    assert result.status == "success", result.error
    assert len(result.image_refs) == 1
    png = client.image_bytes(result.image_refs[0])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert pixels.shape == (10, 12, 3) and np.all(pixels == colour)


def test_a_refused_graph_comes_back_as_data(comfy_server):
    result = ComfyClient(comfy_server.url).run({"1": {"class_type": "NoSuchNode", "inputs": {}}})
    assert result.status == "error" and result.image_refs == []
    assert "NoSuchNode" in result.error["error"]["message"]


def test_no_comfyui_at_the_address_is_said_plainly():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ComfyUIError, match=f"ComfyUI did not answer at {url}.*start ComfyUI with the StyleSmith pack"):
        ComfyClient(url).object_info()


def test_a_spec_needs_the_address_of_a_running_comfyui(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--spec", str(tmp_path / "spec.json"), "--report-dir", str(tmp_path / "report")])
    assert "--spec needs --comfyui-url" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--outputs", str(tmp_path), "--report-dir", str(tmp_path / "r"), "--comfyui-url", "http://x:1"])
    assert "--comfyui-url is for --spec" in capsys.readouterr().err


def test_model_names_are_looked_up_in_the_models_folder_of_the_comfyui_found(tmp_path, monkeypatch):
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "comfy").mkdir(parents=True)
    (comfyui / "main.py").write_text("")
    own, elsewhere = (root / "style_encoders" / "mine.safetensors" for root in (comfyui / "models", tmp_path / "copy"))
    for path in (own, elsewhere):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"encoder")
    monkeypatch.setenv("COMFYUI_PATH", str(comfyui))
    scoring = ["--outputs", str(tmp_path), "--report-dir", str(tmp_path / "report")]
    assert model_file("style_encoders", "mine.safetensors", parse_args(scoring)).resolve() == own.resolve()
    chosen = parse_args(scoring + ["--models-dir", str(tmp_path / "copy")])
    assert model_file("style_encoders", "mine.safetensors", chosen) == elsewhere
    assert model_file("style_encoders", "absent.safetensors", chosen) == tmp_path / "copy" / "style_encoders" / "absent.safetensors"
