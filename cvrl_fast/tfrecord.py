"""Data preparation: write the reference's TFRecord format (cvrl.md §7.1) from raw videos.

One `tf.train.SequenceExample` per video: feature_lists['image/encoded'] holds one JPEG per frame
(every frame of the fixed-rate index space, in order), context['clip/label/index'] the labels.
Unlike the reference's example writer, the frame rate and resolution are recorded in the context
('video/fps', 'image/height', 'image/width', 'video/source') so a reader knows what it got, and a
class name, where the input gives one, goes to 'clip/label/text' (the DMVR/Kinetics field).

    python -m cvrl_fast.tfrecord OUT.tfrecord DIR_OR_LIST_OR_FILES... [--fps 25] [--short-side 256] [--quality 90]

Inputs are videos, globs, directories (of videos, or of class sub-directories: the class is the
sub-directory name) and CSV/TXT lists (`path,label`: integer labels, or class names). Class names are
numbered in sorted order, or in the order of `--classes` (names, comma-separated, or a file with one
name per line); pass the same `--classes` for train and val files so both number the classes alike.
Every input is checked before any decoding; a video that cannot be decoded is skipped and reported
(`skipped K of N videos: PATH: REASON`); the output is written to a temporary file and renamed when
complete, so an interrupted or failed run leaves no partial file.

The loader reads these files (and the reference's own) directly: `PairLoader(["out.tfrecord"], ...)`.
Needs TensorFlow (for the SequenceExample proto, JPEG encoding and the record writer).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Iterable, Optional, Sequence

from . import _C
from ._C import DecodeError
from .evaluation import (MediaError, Skipped, _check_output_file, _check_video_file, _label_kind, _media,
                         _print_summary, _source_items, atomic_path)
from ._loader import _is_tfrecord
from ._progress import Progress

# Frames decoded per get_frames call: bounds memory to one chunk of raw frames plus the JPEGs (a 60 s
# 720p video is 4.5 GB of RGB but ~50 MB of JPEG).
_CHUNK_FRAMES = 64


def _short_side_size(height: int, width: int, short_side: Optional[int]):
    if not short_side:
        return None
    if height <= width:
        return (int(short_side), int(width * short_side // height))
    return (int(height * short_side // width), int(short_side))


def video_to_sequence_example(path: str, *, labels: Sequence[int] = (), label_names: Sequence[str] = (),
                              fps: Optional[float] = 25.0, short_side: Optional[int] = None, quality: int = 90):
    """The SequenceExample of one video: every frame of the fixed-rate index space (native frames if fps is
    None), optionally resized so the short side is `short_side` (bilinear, in the decoder's conversion pass).

    Raises MediaError (a ValueError naming the file) when the video cannot be opened or decoded.
    """
    import tensorflow as tf

    with _media(path):
        reader = _C.VideoReader(path, 1)
        frame_map = list(_C.fixed_rate_frame_map(list(reader.frame_pts_seconds), float(fps) if fps else 0.0))
        size = _short_side_size(reader.height, reader.width, short_side)
        rate = float(fps) if fps else float(reader.fps)
    if not frame_map:
        raise MediaError(path, "no decodable frames")
    unique = sorted(set(frame_map))
    jpegs, shape = {}, None
    for start in range(0, len(unique), _CHUNK_FRAMES):
        chunk = unique[start:start + _CHUNK_FRAMES]
        with _media(path, (DecodeError,)):  # a frame that does not decode (truncated or corrupt data)
            decoded = reader.get_frames(chunk, None, size)
        shape = decoded.shape[1:3]
        for f, frame in zip(chunk, decoded):
            # Each stored frame is encoded once; the index space may repeat it (upsampled frame rates).
            jpegs[f] = tf.io.encode_jpeg(frame, quality=int(quality), chroma_downsampling=True).numpy()
    ex = tf.train.SequenceExample()
    ctx = ex.context.feature
    ctx["clip/label/index"].int64_list.value.extend(int(x) for x in labels)
    if label_names:
        ctx["clip/label/text"].bytes_list.value.extend(str(n).encode() for n in label_names)
    ctx["video/fps"].float_list.value.append(rate)
    ctx["image/height"].int64_list.value.append(int(shape[0]))
    ctx["image/width"].int64_list.value.append(int(shape[1]))
    ctx["video/source"].bytes_list.value.append(os.path.basename(path).encode())
    steps = ex.feature_lists.feature_list["image/encoded"]
    for f in frame_map:
        steps.feature.add().bytes_list.value.append(jpegs[f])
    return ex


def write_tfrecord(output_path: str, videos: Iterable[str], *, labels: Optional[Sequence[Sequence[int]]] = None,
                   label_names: Optional[Sequence[Sequence[str]]] = None, fps: Optional[float] = 25.0,
                   short_side: Optional[int] = None, quality: int = 90, skipped: Optional[Skipped] = None,
                   progress: Optional[Progress] = None) -> int:
    """Writes one SequenceExample per video to `output_path`; returns the number of records.

    Every video is checked to exist first. With `skipped`, a video that cannot be decoded is recorded
    there and left out; without it the MediaError propagates. The file appears only when complete (a
    temporary file beside it is renamed); when nothing could be written, it does not appear at all.
    """
    import tensorflow as tf

    videos = [os.fspath(v) for v in videos]
    for name, per_video in (("labels", labels), ("label_names", label_names)):
        if per_video is not None and len(per_video) != len(videos):
            raise ValueError(f"{name} has {len(per_video)} entries for {len(videos)} videos")
    for v in videos:
        _check_video_file(v, output_path + " input")
    _check_output_file(output_path, "output")
    count = 0
    with atomic_path(output_path) as tmp:
        with tf.io.TFRecordWriter(tmp) as writer:
            for i, path in enumerate(videos):
                try:
                    ex = video_to_sequence_example(path, labels=labels[i] if labels is not None else (),
                                                   label_names=label_names[i] if label_names is not None else (),
                                                   fps=fps, short_side=short_side, quality=quality)
                except MediaError as e:
                    if skipped is None:
                        raise
                    skipped.add(i, e)
                else:
                    writer.write(ex.SerializeToString())
                    count += 1
                if progress is not None:
                    progress.update(i + 1, **({"skipped": len(skipped)} if skipped else {}))
        if skipped is not None:
            skipped.check_some_left()  # raising here removes the temporary file: no empty output
    return count


def _read_classes(value: str) -> list[str]:
    if os.path.isfile(value):
        with open(value) as f:
            names = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    else:
        names = [n.strip() for n in value.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"--classes {value}: needs distinct class names (comma-separated, or a file with one per line)")
    return names


def collect_inputs(inputs: Sequence[str], classes: Optional[Sequence[str]] = None):
    """(paths, integer labels or None, class names per video or None, class list) for the writer's inputs.

    Labels come from the lists' label column or the class sub-directories; every input must be labelled
    the same way (all unlabelled, all integers, or all class names). Class names are numbered in sorted
    order, or by `classes`, where a name not in it is an error naming it.
    """
    items, kinds = [], {}
    for spec in inputs:
        found = _source_items(spec)
        record = next((it for it in found if it.path.rpartition("#")[0] and _is_tfrecord(it.path.rpartition("#")[0])),
                      None)
        if record is not None:
            raise ValueError(f"{spec}: is a TFRecord file; the writer takes videos (files, directories, lists, globs)")
        kinds[spec] = _label_kind(found, spec)
        items.extend(found)
    if len(set(kinds.values())) > 1:
        detail = ", ".join(f"{s}: {'no labels' if k == 'none' else k}" for s, k in kinds.items())
        raise ValueError(f"inputs are labelled differently ({detail}); label every input the same way")
    kind = next(iter(kinds.values()))
    if kind == "none":
        return [it.path for it in items], None, None, []
    if kind == "ints":
        if classes:
            raise ValueError("--classes given but the inputs' labels are integers (class indices as given)")
        return [it.path for it in items], [[int(it.label)] for it in items], None, []
    names = list(classes) if classes else sorted({str(it.label) for it in items})
    number = {n: i for i, n in enumerate(names)}
    unknown = next((it for it in items if str(it.label) not in number), None)
    if unknown is not None:
        raise ValueError(f"{unknown.where}: class '{unknown.label}' is not in --classes ({', '.join(names)})")
    return ([it.path for it in items], [[number[str(it.label)]] for it in items], [[str(it.label)] for it in items],
            names)


def main(argv: Optional[Sequence[str]] = None) -> int:
    prog = "python -m cvrl_fast.tfrecord"
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("output", help="output .tfrecord file")
    p.add_argument("videos", nargs="+", help="videos, globs, directories (of videos or of class sub-directories) "
                                             "or CSV/TXT lists (path,label)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the stored frames (0 = native)")
    p.add_argument("--short-side", type=int, default=None, help="resize so the short side is this (pixels)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--label", type=int, action="append", default=None,
                   help="label index for every video (repeat for multi-label); only for unlabelled inputs")
    p.add_argument("--classes", default=None,
                   help="class numbering for class names: comma-separated names or a file with one per line "
                        "(default: the names found, sorted)")
    args = p.parse_args(argv)
    try:
        paths, labels, names, classes = collect_inputs(args.videos, _read_classes(args.classes) if args.classes else None)
        if args.label:
            if labels is not None:
                raise ValueError("--label given but the inputs carry labels (list label column or class "
                                 "sub-directories); use one or the other")
            labels = [list(args.label)] * len(paths)
        skipped = Skipped("tfrecord", len(paths))
        with Progress("tfrecord", len(paths), unit="videos") as progress:
            n = write_tfrecord(args.output, paths, labels=labels, label_names=names, fps=args.fps or None,
                               short_side=args.short_side, quality=args.quality, skipped=skipped, progress=progress)
    except (ValueError, FileNotFoundError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {args.output} was not written", file=sys.stderr)
        return 130
    _print_summary(skipped)
    if classes:
        print("classes: " + ", ".join(f"{i} {c}" for i, c in enumerate(classes)))
    print(f"wrote {n} records to {args.output}" + (f" ({len(skipped)} of {len(paths)} videos skipped)"
                                                   if len(skipped) else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
