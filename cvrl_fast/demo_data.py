"""The demo's embedded dataset: small generated videos whose class is defined by motion, not colour.

Each video shows one textured object on a background (gradient plus noise, with a few static distractor
blobs). The object's path is drawn per video (period, phase, amplitude, centre) and its class is how it
moves:

  0 ``horizontal``  the object oscillates left-right
  1 ``vertical``    the object oscillates up-down
  2 ``orbit``       the object circles around a centre
  3 ``pulse``       the object stays put and grows and shrinks

All four classes are invariant under a horizontal flip (CVRL's augmentation flips), so flipping never
turns one class into another. The object's colour and the background's tint drift over time.

The look (background, object shape and texture, colour drift) is either drawn per video
(``look_pool=0``) or taken from ``look_pool`` fixed looks shared by all videos. Either way a single
frame says nothing about the class. The demo uses ``look_pool=1``: all videos look alike and differ only
in their motion, so CVRL's instance discrimination (telling a video's two clips from other videos') can
only be solved by motion. With a look per video the network solves it by matching looks instead, and
learns nothing about the classes in the demo's budget (see ``configs/demo.py``).
``segment_frames`` adds appearance cuts (a new look every few frames while the motion goes on).

Frames are rendered with NumPy and encoded to H.264 mp4 by the ``ffmpeg`` CLI (a real encoder, real GOP
structure, real decode path).

    python -m cvrl_fast.demo_data OUT_DIR [--train 160] [--val 80] [--seed 0] [--look-pool 1]

writes ``OUT_DIR/{train,val}/*.mp4`` and ``OUT_DIR/{train,val}.csv`` (``path,label`` rows).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import pathlib
import shutil
import subprocess

import numpy as np

CLASSES = ("horizontal", "vertical", "orbit", "pulse")
# Bump when render_video's output changes, so that videos written by an older version are redrawn.
RENDER_VERSION = 2


def _appearance(rng: np.random.Generator, size: int, num_frames: int, look_pool: int = 0) -> dict:
    """Everything a video shows that is NOT its motion: background, object shape, texture, colours.

    look_pool > 0: the whole appearance is one of `look_pool` fixed looks shared by all videos, so the
    only thing that tells one video from another is how its object moves. `rng` then only picks the look.
    """
    if look_pool > 0:
        rng = np.random.default_rng([7919, int(rng.integers(look_pool))])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Background: a random linear gradient between two random colours plus fixed noise texture.
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = ((xx * np.cos(angle) + yy * np.sin(angle)) / (size * 1.5) + 0.5).clip(0, 1)[..., None]
    background = c0 * (1 - t) + c1 * t + rng.normal(0, 12, (size, size, 1)).astype(np.float32)
    for _ in range(rng.integers(1, 4)):  # static distractors: they carry no class information
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(3, 8)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        background[mask] = rng.uniform(0, 255, 3)
    look = {
        "background": background,
        "radius": rng.uniform(size * 0.09, size * 0.16),
        "square": rng.random() < 0.5,
        "stripes": 0.75 + 0.25 * np.sign(np.sin((xx + yy) * rng.uniform(0.4, 1.2)))[..., None],
    }
    # Colour drift: the object's colour moves between random key colours every `hold` frames, and the
    # background is tinted by a slowly rotating colour.
    look["hold"] = hold = rng.uniform(15, 30)
    look["keys"] = rng.uniform(0, 255, (int(num_frames / hold) + 2, 3)).astype(np.float32)
    look["tint_phase"] = rng.uniform(0, 2 * np.pi, 3)
    look["tint_speed"] = rng.uniform(0.03, 0.08)
    return look


def render_video(rng: np.random.Generator, label: int, *, size: int = 64, num_frames: int = 75,
                 segment_frames: int = 0, look_pool: int = 0) -> np.ndarray:
    """Render one video of class `label` as uint8 [num_frames, size, size, 3].

    segment_frames > 0: the appearance (background, object shape, texture, colours) is drawn anew every
    segment_frames to 2 x segment_frames frames (a cut), while the motion goes on unbroken; then the
    only thing two distant clips of one video share is how the object moves.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # The motion (all that defines the class) is drawn once per video.
    period = rng.uniform(20, 40)  # frames per motion cycle
    phase = rng.uniform(0, 2 * np.pi)
    amplitude = rng.uniform(size * 0.18, size * 0.3)
    centre = size / 2 + rng.uniform(-size * 0.08, size * 0.08, 2)
    look = _appearance(rng, size, num_frames, look_pool)
    next_cut = int(rng.integers(segment_frames, 2 * segment_frames)) if segment_frames > 0 else num_frames
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for i in range(num_frames):
        if i == next_cut:
            look = _appearance(rng, size, num_frames, look_pool)
            next_cut += int(rng.integers(segment_frames, 2 * segment_frames))
        k, f = divmod(i / look["hold"], 1.0)
        colour = look["keys"][int(k)] * (1 - f) + look["keys"][int(k) + 1] * f
        tint = 1.0 + 0.35 * np.sin(look["tint_phase"] + look["tint_speed"] * i).astype(np.float32)
        a = 2 * np.pi * i / period + phase
        cy, cx, r = centre[0], centre[1], look["radius"]
        if label == 0:
            cx = cx + amplitude * np.sin(a)
        elif label == 1:
            cy = cy + amplitude * np.sin(a)
        elif label == 2:
            cx, cy = cx + amplitude * np.cos(a), cy + amplitude * np.sin(a)
        else:
            r = r * (1.0 + 0.8 * np.sin(a))
        if look["square"]:
            mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        frame = look["background"] * tint
        frame[mask] = (colour * look["stripes"])[mask]
        frames[i] = frame.clip(0, 255).astype(np.uint8)
    return frames


def encode_mp4(frames: np.ndarray, path: pathlib.Path, fps: int = 25) -> None:
    """Encode uint8 [N, H, W, 3] frames to H.264 mp4 with the ffmpeg CLI."""
    n, h, w, _ = frames.shape
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset", "fast", "-crf", "20",
           "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, input=frames.tobytes(), check=True)


def make_dataset(out_dir: str | pathlib.Path, *, num_train: int = 160, num_val: int = 80, seed: int = 0,
                 size: int = 64, num_frames: int = 75, segment_frames: int = 0,
                 look_pool: int = 1) -> dict[str, pathlib.Path]:
    """Write the demo dataset (balanced classes) and return {"train": csv_path, "val": csv_path}."""
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("make_dataset: the ffmpeg CLI is needed to encode the demo videos (apt install ffmpeg)")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Videos already on disk are reused (a second demo run skips encoding) only when the stamp says they
    # were made with the same recipe; otherwise they are overwritten, never mixed with new ones.
    recipe = {"render_version": RENDER_VERSION, "seed": seed, "size": size, "num_frames": num_frames,
              "segment_frames": segment_frames, "look_pool": look_pool}
    stamp = out / "recipe.json"
    try:
        reuse = json.loads(stamp.read_text()) == recipe
    except (OSError, ValueError):  # no stamp, or a damaged one: redraw
        reuse = False
    if not reuse:
        stamp.unlink(missing_ok=True)  # a run killed half-way leaves no stamp: the next run redraws all
    lists = {}
    jobs = []
    for split, count, split_seed in (("train", num_train, seed), ("val", num_val, seed + 1_000_003)):
        (out / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(count):
            label = i % len(CLASSES)
            path = out / split / f"{split}_{i:04d}_{CLASSES[label]}.mp4"
            # One RNG per video: the dataset is the same whatever order the videos are written in.
            jobs.append((np.random.default_rng([split_seed, i]), label, path))
            # Rows are relative to the list file's folder (how read_list_file reads them), so the list
            # means the same videos from any working directory and after the folder is moved.
            rows.append((path.relative_to(out).as_posix(), label))
        lists[split] = out / f"{split}.csv"
        with open(lists[split], "w", newline="") as f:
            csv.writer(f).writerows([("path", "label"), *rows])

    def write(job):
        rng, label, path = job
        if not (reuse and path.exists()):
            tmp = path.with_suffix(".tmp.mp4")
            encode_mp4(render_video(rng, label, size=size, num_frames=num_frames, segment_frames=segment_frames,
                                    look_pool=look_pool), tmp)
            tmp.rename(path)  # a killed run never leaves a half-written video behind

    with concurrent.futures.ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        list(pool.map(write, jobs))
    stamp.write_text(json.dumps(recipe))
    return lists


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the cvrl_fast demo dataset.")
    parser.add_argument("out_dir")
    parser.add_argument("--train", type=int, default=160)
    parser.add_argument("--val", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--look-pool", type=int, default=1, help="shared looks; 0 = a look per video")
    args = parser.parse_args()
    for split, path in make_dataset(args.out_dir, num_train=args.train, num_val=args.val, seed=args.seed,
                                    look_pool=args.look_pool).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
