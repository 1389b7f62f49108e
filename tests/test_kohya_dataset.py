"""StyleForge's data: kohya folders and captions, aspect buckets, the per-step plan and the 1x1-conv LoRA.

Pure core code: no model, no ComfyUI.
"""
import pytest
import torch
from PIL import Image
from torch import nn

from core.data.aspect_buckets import bucket_sizes, fit_to_bucket, nearest_bucket
from core.lora.adapters import LoRASet
from core.data.image_folder import DatasetError
from core.data.kohya_dataset import ImageItem, ImageSets, read_training_folder
from core.data.step_batches import EpochSchedule, StepPlan, StepSampler


def write_image(path, width, height, colour=(200, 40, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (width, height), colour)
    image.paste((20, 20, 220), (0, 0, width // 2, height))      # left half blue: flips show
    image.save(path)


@pytest.mark.parametrize("resolution", [64, 128, 512, 1024])
def test_buckets_hold_about_resolution_squared_pixels_in_sides_of_64(resolution):
    sizes = bucket_sizes(resolution)
    assert (resolution // 64 * 64, resolution // 64 * 64) in sizes
    for width, height in sizes:
        assert width % 64 == 0 and height % 64 == 0
        assert width * height <= resolution ** 2
        assert (height, width) in sizes
    if resolution == 512:   # kohya's defaults at 512 px: sides 256..1024
        assert min(min(s) for s in sizes) == 256 and max(max(s) for s in sizes) == 1024
        assert all(w * h >= 0.75 * 512 ** 2 for w, h in sizes)


def test_an_image_goes_to_the_bucket_of_its_aspect_and_is_covered_not_squashed():
    buckets = bucket_sizes(512)
    assert nearest_bucket(1000, 1000, buckets) == (512, 512)
    assert nearest_bucket(1920, 1080, buckets) == (640, 384)
    assert nearest_bucket(1080, 1920, buckets) == (384, 640)
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 150, 100))
    pixels = fit_to_bucket(image, (192, 64))
    assert pixels.shape == (64, 192, 3)
    assert (pixels[:, 0, 2] > 0.9).all() and (pixels[:, -1, 0] > 0.9).all()      # blue left, red right
    mirrored = fit_to_bucket(image, (192, 64), flip=True)
    assert (mirrored[:, 0, 0] > 0.9).all() and (mirrored[:, -1, 2] > 0.9).all()


def test_repeat_folders_captions_and_plain_images(tmp_path):
    write_image(tmp_path / "plain.png", 64, 64)
    write_image(tmp_path / "10_zwx style" / "wide.png", 256, 64)
    (tmp_path / "10_zwx style" / "wide.txt").write_text("  a wide\nbanner \n", encoding="utf-8")
    write_image(tmp_path / "2_more" / "tall.jpg", 64, 192)
    (tmp_path / "2_more" / "tall.txt").write_text("", encoding="utf-8")
    (tmp_path / "2_more" / "notes.md").write_text("not an image")
    items = {item.path.name: item for item in read_training_folder(tmp_path, 128, "StyleRef images")}
    assert set(items) == {"plain.png", "wide.png", "tall.jpg"}
    names = ("plain.png", "wide.png", "tall.jpg")
    assert [items[n].repeats for n in names] == [1, 10, 2]
    assert [items[n].caption for n in names] == ["", "a wide banner", ""]
    assert [items[n].bucket for n in names] == [(128, 128), (256, 64), (64, 192)]


def test_bad_folders_name_the_problem_and_the_fix(tmp_path):
    write_image(tmp_path / "set" / "a.png", 64, 64)
    (tmp_path / "set" / "extras").mkdir()
    with pytest.raises(DatasetError, match=r"extras is not a repeat folder: name it N_name .*10_extras"):
        read_training_folder(tmp_path / "set", 64, "StyleRef images")
    write_image(tmp_path / "zero" / "0_none" / "a.png", 64, 64)
    with pytest.raises(DatasetError, match="0_none is not a repeat folder"):
        read_training_folder(tmp_path / "zero", 64, "Aux images")
    write_image(tmp_path / "latin1" / "a.png", 64, 64)
    (tmp_path / "latin1" / "a.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"caption file .*a.txt cannot be read .*save it as UTF-8"):
        read_training_folder(tmp_path / "latin1", 64, "StyleRef images")
    (tmp_path / "empty" / "3_x").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"Aux images folder .*empty has no usable image"):
        read_training_folder(tmp_path / "empty", 64, "Aux images")


def items_of(buckets_and_repeats):
    return [ImageItem(None, "", repeats, bucket) for bucket, repeats in buckets_and_repeats]


def test_an_epoch_uses_every_image_its_repeats_times_in_batches_of_one_bucket():
    items = items_of([((64, 64), 1), ((64, 64), 3), ((128, 64), 2), ((128, 64), 1)])
    schedule = EpochSchedule(items, 2, seed_parts=(0, 0))
    assert schedule.per_epoch == 4
    batches = [schedule.batch(step) for step in range(4)]
    assert all(len({items[i].bucket for i in batch}) == 1 and len(batch) == 2 for batch in batches)
    used = sorted(i for batch in batches for i in batch)
    assert (used.count(0), used.count(1)) == (1, 3)
    assert used.count(2) >= 2 and used.count(3) >= 1 and used.count(2) + used.count(3) == 4   # 3 fill 2 batches
    assert [schedule.batch(step) for step in range(4, 8)] != batches          # each epoch reshuffles
    assert EpochSchedule(items, 2, seed_parts=(0, 0)).batch(6) == schedule.batch(6)


def test_ranks_take_slices_of_one_global_batch_with_their_own_flip_and_noise():
    sets = [items_of([((64, 64), 1)] * 5), items_of([((64, 64), 2)] * 3)]
    one = StepPlan.build(sets, batch_size=2, ranks=1, rank=0, grad_accum=1, seed=7, flip=True)
    two = [StepPlan.build(sets, batch_size=1, ranks=2, rank=r, grad_accum=1, seed=7, flip=True) for r in range(2)]
    for step in range(6):
        union = sorted(two[0](step) + two[1](step), key=lambda r: (r.set_index, r.position))
        assert union == one(step)
        assert [one.noise_generator(step, r).initial_seed() for r in one(step)] == \
               [two[r.position].noise_generator(step, r).initial_seed() for r in union]
    flips = [r.flip for step in range(20) for r in one(step)]
    assert 0.3 < sum(flips) / len(flips) < 0.7
    accumulated = StepPlan.build(sets, batch_size=1, ranks=1, rank=0, grad_accum=2, seed=7, flip=True)
    assert [(r.item, r.position) for r in accumulated(3)] == [(r.item, r.position) for r in one(3)]
    assert [r.micro for r in accumulated(3)] == [0, 1, 0, 1]


def test_the_loader_decodes_each_step_in_worker_processes(tmp_path):
    write_image(tmp_path / "a.png", 128, 128)
    write_image(tmp_path / "1_wide" / "b.png", 256, 80)
    sets = [read_training_folder(tmp_path, 128, "StyleRef images")]
    plan = StepPlan.build(sets, batch_size=1, ranks=1, rank=0, grad_accum=1, seed=0, flip=False)
    loader = torch.utils.data.DataLoader(ImageSets(sets), batch_sampler=StepSampler(plan, 3, 7), num_workers=2,
                                         collate_fn=list)
    steps = list(loader)
    assert len(steps) == 4
    for step, samples in zip(range(3, 7), steps):
        (request, image, caption), = samples
        assert request == plan(step)[0]
        width, height = sets[0][request.item].bucket
        assert image.shape == (height, width, 3) and image.dtype == torch.float32


def test_a_pointwise_conv_lora_equals_its_merged_kohya_weight():
    torch.manual_seed(0)
    root = nn.Sequential(nn.Conv2d(8, 6, 1), nn.Conv2d(6, 6, 3, padding=1))
    lora = LoRASet(root, r"^\d$", rank=2, alpha=1.0, pointwise_convs=True)
    assert lora.names == ["0"]            # the 3x3 convolution is no target
    pair = lora.pair("0")
    nn.init.normal_(pair.up.weight)
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        lora.attach()
        adapted = root(x)
        lora.detach()
        down, up = lora.file_weights("0")
        assert up.shape == (6, 2, 1, 1) and down.shape == (2, 8, 1, 1)
        # what ComfyUI's LoraLoader adds to the weight: alpha / rank * up @ down, reshaped to the conv weight's shape
        weight = root[0].weight + pair.scale * (up.flatten(1) @ down.flatten(1)).reshape(root[0].weight.shape)
        merged = root[1](nn.functional.conv2d(x, weight, root[0].bias))
        base = root(x)
    assert torch.allclose(adapted, merged, atol=1e-5)
    assert not torch.allclose(adapted, base, atol=1e-3)
