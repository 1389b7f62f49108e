"""Which images every optimiser step trains on, as a function of (seed, step) alone.

Each image set has an epoch schedule: every image appears `repeats` times per epoch, shuffled within its aspect
bucket and cut into global batches of one bucket (the last batch of a bucket is filled up from the start of its
shuffled order); then the batches of all buckets are shuffled. A step's global batch holds
batch_size x ranks x grad_accum images: micro-step m of rank r takes positions [(m * ranks + r) * batch_size, ...),
and an item's flip, noise and timestep are seeded by (seed, step, set, position). So a resumed run draws what the
uninterrupted one drew, and two ranks with batch 1 train exactly what one rank with batch 2 trains.
"""
import hashlib
from dataclasses import dataclass

import torch


def mixed_seed(*parts) -> int:
    """A 63-bit seed from any ints and strings, stable across processes and Python versions."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") >> 1


def generator(*parts) -> torch.Generator:
    return torch.Generator().manual_seed(mixed_seed(*parts))


class EpochSchedule:
    """Global batches of one image set: `batch(step)` -> item indices, all of one bucket. `items` are anything
    with a `bucket` and `repeats` (core.data.kohya_dataset.ImageItem)."""

    def __init__(self, items: list, batch_size: int, seed_parts: tuple):
        self.groups: dict[tuple[int, int], list[int]] = {}
        for index, item in enumerate(items):
            self.groups.setdefault(item.bucket, []).extend([index] * item.repeats)
        self.batch_size, self.seed_parts = batch_size, seed_parts
        self.per_epoch = sum(-(-len(members) // batch_size) for members in self.groups.values())
        self._cached: tuple[int, list[list[int]]] = (-1, [])

    def batch(self, step: int) -> list[int]:
        epoch, index = divmod(step, self.per_epoch)
        if self._cached[0] != epoch:
            self._cached = (epoch, self._epoch(epoch))
        return self._cached[1][index]

    def _epoch(self, epoch: int) -> list[list[int]]:
        g = generator(*self.seed_parts, "epoch", epoch)
        batches = []
        for bucket in sorted(self.groups):
            members = self.groups[bucket]
            order = [members[k] for k in torch.randperm(len(members), generator=g).tolist()]
            batches += [[order[(start + j) % len(order)] for j in range(self.batch_size)]
                        for start in range(0, len(order), self.batch_size)]
        return [batches[k] for k in torch.randperm(len(batches), generator=g).tolist()]


@dataclass(frozen=True)
class Request:
    set_index: int
    item: int
    flip: bool
    micro: int          # micro-step of the optimiser step
    position: int       # in the step's global batch of its set: seeds the item's noise and timestep


@dataclass
class StepPlan:
    """The requests of one rank for one optimiser step, over every image set."""
    schedules: list[EpochSchedule]
    batch_size: int
    ranks: int
    rank: int
    grad_accum: int
    seed: int
    flip: bool

    @classmethod
    def build(cls, sets: list[list], batch_size: int, ranks: int, rank: int, grad_accum: int, seed: int,
              flip: bool) -> "StepPlan":
        """The plan over `sets` (lists of items with `bucket` and `repeats`); every rank builds the same schedules."""
        schedules = [EpochSchedule(items, batch_size * ranks * grad_accum, (seed, s)) for s, items in enumerate(sets)]
        return cls(schedules, batch_size, ranks, rank, grad_accum, seed, flip)

    def __call__(self, step: int) -> list[Request]:
        requests = []
        for s, schedule in enumerate(self.schedules):
            items = schedule.batch(step)
            for micro in range(self.grad_accum):
                first = (micro * self.ranks + self.rank) * self.batch_size
                for position in range(first, first + self.batch_size):
                    coin = torch.rand(1, generator=generator(self.seed, "flip", step, s, position))
                    flip = self.flip and bool(coin < 0.5)
                    requests.append(Request(s, items[position], flip, micro, position))
        return requests

    def noise_generator(self, step: int, request: Request) -> torch.Generator:
        """The generator of one item's noise and timestep."""
        return generator(self.seed, "noise", step, request.set_index, request.position)


class StepSampler(torch.utils.data.Sampler):
    """Batch sampler of a DataLoader: one batch of requests per optimiser step in [start, end)."""

    def __init__(self, plan: StepPlan, start: int, end: int):
        self.plan, self.start, self.end = plan, start, end

    def __iter__(self):
        return (self.plan(step) for step in range(self.start, self.end))

    def __len__(self) -> int:
        return self.end - self.start
