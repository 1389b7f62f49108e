"""Training images read through a torch DataLoader: decoded per batch by worker processes, never all held in
memory (Style30K as float tensors would take about 94 GB). Pure torch + PIL."""
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .image_folder import load_image_file


class SquareImages(Dataset):
    """Item i: the image at paths[i], centre-cropped square, (resolution, resolution, 3) float32 in [0, 1]."""

    def __init__(self, paths: list[Path], resolution: int, what: str = "training image"):
        self.paths, self.resolution, self.what = list(paths), resolution, what

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return load_image_file(self.paths[i], self.resolution, self.what)[0]


def _loader(images: SquareImages, workers: int, **batching) -> DataLoader:
    workers = min(workers, len(images))
    return DataLoader(images, num_workers=workers, prefetch_factor=2 if workers else None, **batching)


def image_batches(paths: list[Path], resolution: int, batch_size: int, workers: int = 2,
                  what: str = "training image") -> Iterator[torch.Tensor]:
    """IMAGE batches (B, resolution, resolution, 3) of `paths` in order; `workers` processes decode ahead."""
    yield from _loader(SquareImages(paths, resolution, what), workers, batch_size=batch_size, shuffle=False)


def indexed_batches(paths: list[Path], resolution: int, batches: Iterable[list[int]], workers: int = 2,
                    what: str = "training image") -> Iterator[torch.Tensor]:
    """For each list of indices in `batches` (computed lazily, in order), the IMAGE batch of those paths."""
    return iter(_loader(SquareImages(paths, resolution, what), workers, batch_sampler=batches))


def load_images(paths: list[Path], resolution: int, workers: int = 2, what: str = "training image") -> torch.Tensor:
    """All of `paths` as one IMAGE batch: for the few images a run keeps (a pool, a batch, samples)."""
    return torch.cat(list(image_batches(paths, resolution, 1, workers, what)))
