#!/usr/bin/env bash
# Copies the loader benchmark's data into build/scaling/data/ small enough to travel to a lent
# machine (about 33 MB): the sixteen 10 s mp4 cuts (default GOP and -g 16) of .cache/bench/, and
# three of the eight records of .cache/bench_loader/videos.tfrecord (film1906_00s, bikes_00s,
# cityCC0_00s: one of each source; the records are copied byte for byte, CRCs included).
# Run `make bench` (or benchmarks/bench_loader.py) once first so that .cache/ holds the data.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p build/scaling/data
cp .cache/bench/*_default_gop.mp4 .cache/bench/*_g16.mp4 build/scaling/data/
python3 - <<'EOF'
import struct

keep = (0, 6, 7)  # film1906_00s, bikes_00s, cityCC0_00s
records = []
with open(".cache/bench_loader/videos.tfrecord", "rb") as f:
    while header := f.read(12):  # length (8 bytes) + masked CRC of the length (4)
        length = struct.unpack("<Q", header[:8])[0]
        records.append(header + f.read(length + 4))  # payload + its masked CRC
with open("build/scaling/data/videos3.tfrecord", "wb") as out:
    for i in keep:
        out.write(records[i])
EOF
du -sh build/scaling/data
