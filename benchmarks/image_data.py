"""Images: kdorch's dataset step (decode + resize + write) and the student's loader (held and
streamed) against torchvision's ``ImageFolder`` + ``DataLoader`` reading the same folder in the
same run, and the dataset step's peak memory against the decoded size.

Writes ``--images`` RGB PNG files (default 20,000, 80x80, 10 classes: smooth patterns and
noise) into ``--workdir`` once (reused by later runs), then, on that folder:

1. the `dataset` step (``source: image_folder``, ``image_size: [64, 64]``, per-channel
   normalisation, ``decode_threads`` = CPUs: worker processes), in a fresh Python process, so its
   peak resident memory (``VmHWM``) is its own; beside it, the same process importing the
   same modules and running nothing (the floor);
2. ``ImageFolder`` (``Resize((64, 64))``, ``ToTensor``, ``Normalize``) through a ``DataLoader``
   (batch 256, ``--loader-workers`` worker processes, default the CPUs): one pass over every
   image — what a plain PyTorch script decodes every epoch — in a fresh process too, once
   before the step and once after it (the machine's load changes within a run); images/s and
   images per CPU-second (the process's and its children's), which a shared machine's load
   disturbs less;
3. the step's cache key: the content identity of every image (what `kdorch plan` computes);
4. the student's loader on the dataset's train split, as the training step reads it
   (`components.training.data.prepare_data`): held (read and verified once, then a seeded
   shuffle per epoch) and streamed (Ray Data, a local shuffle buffer), first epoch and the next.

Prints images/s and the ratios (kdorch / ImageFolder; the goal is >= 0.8), and the memory
figures. Run: ``python benchmarks/image_data.py`` (a few minutes on 2 cores; ``--images 2000``
for a quick look).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _bench import ROOT, header, ray_up, scratch, verdict

SIZE = 64  # the size every image is resized to (sources are 80x80)
CLASSES = 10


def write_images(root: Path, count: int) -> Path:
    """``root/c<k>/<i>.png``: ``count`` 80x80 RGB images, class k a pattern of frequency k."""
    import numpy as np
    from PIL import Image

    folder = root / f"images-{count}"
    if (folder / "done").exists():
        return folder
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:80, 0:80] / 80.0
    for i in range(count):
        k = i % CLASSES
        base = np.sin((k + 1) * np.pi * (xx * rng.uniform(0.5, 1.5) + yy * rng.uniform(0.5, 1.5)))
        pixels = (base[..., None] * rng.uniform(40, 90, 3) + 128).astype(np.float32)
        pixels += rng.normal(0, 12, pixels.shape)
        (folder / f"c{k}").mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
        image.save(folder / f"c{k}" / f"{i:06d}.png")
    (folder / "done").write_text("")
    return folder


def dataset_config(folder: Path, rows: int | None = None) -> dict[str, Any]:
    return {
        "source": "image_folder",
        "uri": str(folder),
        "image_size": [SIZE, SIZE],
        "decode_threads": os.cpu_count() or 2,
        "max_rows": rows,
    }


def child(kind: str, folder: str, store: str, rows: int | None, workers: int) -> None:
    """In a fresh process: one measurement (``kind``: the dataset step, ImageFolder's pass, or
    only the step's imports: the floor); prints a JSON line with its wall seconds, the CPU
    seconds it and its children used, its peak resident memory and the dataset."""
    import resource

    import components.data.build  # what the step imports
    import components.data.image_build  # noqa: F401

    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    if kind == "imagefolder":  # imported before the clock starts, as the step's modules are
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    used, started = cpu(), time.perf_counter()
    dataset: dict[str, Any] = {}
    with TotalMemory() as total:
        if kind == "step":
            dataset = run_step(Path(folder), store, rows)
        elif kind == "imagefolder":
            imagefolder_pass(Path(folder), workers)
    result = {
        "seconds": time.perf_counter() - started,
        "cpu": cpu() - used,
        "peak": peak_rss(),
        "total": total.peak,
        "dataset": dataset,
    }
    print(json.dumps(result))


def run_step(folder: Path, store: str, rows: int | None) -> dict[str, Any]:
    from orchestrator import Pipeline, run

    p = Pipeline("images")
    p.add("data", "dataset", config=dataset_config(folder, rows))
    step = run(p.spec, storage=store, executor="local").step("data")
    assert step.error is None, step.error
    return dict(step.outputs["dataset"])


class TotalMemory:
    """The peak of this process's resident memory plus its children's (the step's decoding
    workers), sampled every 20 ms from /proc (Linux)."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _rss(pid: int | str) -> int:
        with contextlib.suppress(OSError):  # the process just ended
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    @staticmethod
    def _children() -> list[str]:
        found = []
        for task in Path("/proc/self/task").iterdir():
            with contextlib.suppress(OSError):  # the thread just ended
                found += (task / "children").read_text().split()
        return found

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            total = self._rss("self") + sum(self._rss(pid) for pid in self._children())
            self.peak = max(self.peak, total)

    def __enter__(self) -> TotalMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM, not ``ru_maxrss``, which keeps the
    parent's high-water mark across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no VmHWM in /proc/self/status (Linux only)")


def fingerprint_seconds(folder: Path) -> float:
    """Seconds to compute the step's external fingerprint (what `kdorch plan` and `run` do)."""
    from components.data.dataset import DatasetComponent
    from schemas.kd.components.dataset import DatasetConfig

    config = DatasetConfig.model_validate(dataset_config(folder))
    started = time.perf_counter()
    DatasetComponent.external_fingerprint(config)
    return time.perf_counter() - started


def in_fresh_process(
    kind: str, folder: Path, store: Path, rows: int | None = None, workers: int = 2
) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, str(folder), str(store)]
    command += ["--rows", str(rows)] if rows else []
    command += ["--loader-workers", str(workers)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def imagefolder_pass(folder: Path, workers: int) -> int:
    """One pass of ImageFolder + DataLoader over every image (normalised with ImageNet's
    statistics: the cost is the same as with any others); the images it gave."""
    import gc

    import torch
    from torchvision import datasets, transforms

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    transform = transforms.Compose(
        [transforms.Resize((SIZE, SIZE)), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )
    data = datasets.ImageFolder(str(folder), transform=transform)
    loader = torch.utils.data.DataLoader(data, batch_size=256, shuffle=True, num_workers=workers)
    rows = sum(len(y) for _, y in loader)
    del loader
    gc.collect()  # the workers exit, so their CPU time is counted
    return rows


def loader_rates(store: Path, dataset: dict[str, Any], streamed: bool) -> tuple[float, float]:
    """Images/s of the student's loader over the train split: first epoch (the read included)
    and second epoch."""
    import torch

    from components.training.batches import HeldBatches, StreamBatches
    from components.training.data import prepare_data
    from orchestrator import ArtifactStore
    from schemas.kd.artifacts import Dataset
    from schemas.kd.components.training import TrainingSettings

    data_ref = Dataset.model_validate(dataset)
    settings = TrainingSettings(worker_cache_mb=0 if streamed else 1e6)
    rates = []
    started = time.perf_counter()
    data = prepare_data(ArtifactStore(str(store)), data_ref, settings)
    if streamed:
        source: Any = StreamBatches(
            data.streamed["train"], batch_size=256, shuffle=True, shuffle_buffer=2048
        )
    else:
        columns = {k: torch.from_numpy(v) for k, v in data.held["train"].items()}
        source = HeldBatches(columns, batch_size=256, shuffle=True)
    for epoch in range(2):
        rows = sum(len(batch["y"]) for batch in source.batches(epoch))
        rates.append(rows / (time.perf_counter() - started))
        started = time.perf_counter()
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--workdir", default="/tmp/kdorch-bench-images")
    parser.add_argument("--loader-workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.rows, args.loader_workers)
        return
    header("image data: the dataset step and the student's loader vs ImageFolder + DataLoader")
    folder = write_images(Path(args.workdir), args.images)
    workers = args.loader_workers
    with scratch("kdb-images-") as tmp:
        hashing = fingerprint_seconds(folder)
        floor = in_fresh_process("floor", folder, tmp / "unused")
        fewer = {
            rows: in_fresh_process("step", folder, tmp / f"rows-{rows}", rows=rows)
            for rows in (args.images // 4, args.images // 2)
        }
        # ImageFolder before and after the step: a shared machine's load changes within a run.
        before = in_fresh_process("imagefolder", folder, tmp, workers=workers)
        step = in_fresh_process("step", folder, tmp / "store")
        after = in_fresh_process("imagefolder", folder, tmp, workers=workers)
        held = loader_rates(tmp / "store", step["dataset"], streamed=False)
        with ray_up():
            streamed = loader_rates(tmp / "store", step["dataset"], streamed=True)
    report(args, step, [before, after], held, streamed)
    print(
        f"   the step's cache key (every image's BLAKE3, first time in a process): {hashing:.2f} s"
    )
    memory(args.images, {**fewer, args.images: step}, floor)


def memory(images: int, steps: dict[int, dict[str, Any]], floor: dict[str, Any]) -> None:
    """The step's peak memory for each number of images, against their decoded size."""
    mib = 2**20
    print(f"dataset step peak memory (importing the same modules: {floor['peak'] / mib:,.0f} MiB):")
    for rows, step in steps.items():
        print(
            f"   {rows:>7,} images: {step['peak'] / mib:,.0f} MiB ({step['total'] / mib:,.0f} MiB "
            f"with its decoding workers) for {rows * 3 * SIZE * SIZE * 4 / mib:,.0f} MiB of "
            f"decoded float32 images ({rows * 3 * SIZE * SIZE / mib:,.0f} MiB as uint8)"
        )


def report(
    args: argparse.Namespace,
    step: dict[str, Any],
    baselines: list[dict[str, Any]],
    held: tuple[float, float],
    streamed: tuple[float, float],
) -> None:
    images = args.images
    skipped = (step["dataset"].get("skipped") or {"count": 0})["count"]
    wall = sum(images / b["seconds"] for b in baselines) / len(baselines)
    cpu = sum(images / b["cpu"] for b in baselines) / len(baselines)
    print(f"   {images:,} PNG images 80x80 RGB -> {SIZE}x{SIZE}, {CLASSES} classes")
    each = ", ".join(f"{images / b['seconds']:,.0f}" for b in baselines)
    print(
        f"ImageFolder + DataLoader ({args.loader_workers} workers), one pass: {wall:,.0f} "
        f"images/s ({each}: before and after the step), {cpu:,.0f} images per CPU-second"
    )
    step_wall = (images - skipped) / step["seconds"]
    step_cpu = (images - skipped) / step["cpu"]
    threads = dataset_config(Path())["decode_threads"]
    met = verdict(step_wall / wall >= 0.8)
    print(
        f"dataset step (decode+resize+write, {threads} workers): {step_wall:,.0f} images/s = "
        f"{step_wall / wall:.2f}x ImageFolder; {step_cpu:,.0f} images per CPU-second = "
        f"{step_cpu / cpu:.2f}x (goal: images/s >= 0.8x, {met})"
    )
    for name, (first, later) in (("held", held), ("streamed", streamed)):
        print(
            f"student loader, {name}: first epoch (read included) {first:,.0f} images/s = "
            f"{first / wall:.2f}x; next epoch {later:,.0f} images/s = {later / wall:.2f}x"
        )


if __name__ == "__main__":
    main()
