#!/usr/bin/env bash
# Builds benchmarks/scaling/loader_scaling as one static x86-64 binary that needs no FFmpeg or
# libjpeg-turbo on the machine it runs on (a lent GPU server's image has neither, and cannot fetch
# them). FFmpeg is the same release as Debian 12's libavcodec59 (5.1.9), built from Debian's source
# tarball with only the demuxers/decoders/parsers the loader meets and x86 assembly on (needs nasm);
# libjpeg-turbo is Debian's static library. Output: build/scaling/loader_scaling.
# With --shared it links the system's FFmpeg and libjpeg-turbo instead (no FFmpeg build, runs only
# where those are installed): build/scaling/loader_scaling_shared. The test suite builds that one.
#
#   bash benchmarks/scaling/build.sh           # ~6 min the first time on 2 cores (FFmpeg), 30 s after
#   bash benchmarks/scaling/build.sh --shared  # 30 s
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build/scaling
prefix=$out/ffmpeg
mkdir -p "$out"
sources=$(ls csrc/*.cc | grep -v -e bindings.cc -e tf_ops.cc)  # the engine alone: no Python, no TensorFlow
tj_version=$(pkg-config --modversion libturbojpeg)
flags=(-std=c++17 -O3 -pthread -DCVRL_TURBOJPEG_VERSION="\"$tj_version\"" -Icsrc)

if [ "${1:-}" = "--shared" ]; then
  g++ "${flags[@]}" $sources benchmarks/scaling/loader_scaling.cc \
    $(pkg-config --libs libavformat libavcodec libswscale libavutil libturbojpeg libjpeg) -o "$out/loader_scaling_shared"
  echo "built $out/loader_scaling_shared"
  exit 0
fi

tarball=ffmpeg_5.1.9.orig.tar.xz
sha256=d9b593bb2ba93d4b50f74177e0cdcd41747e708596367deed0c30348a71dd176
if [ ! -f "$prefix/lib/libavcodec.a" ]; then
  command -v nasm >/dev/null || { echo "build.sh: needs nasm (apt-get install nasm) for FFmpeg's x86 assembly" >&2; exit 1; }
  if [ ! -f "$out/$tarball" ]; then
    curl -sfL -o "$out/$tarball.part" "http://deb.debian.org/debian-security/pool/updates/main/f/ffmpeg/$tarball"
    mv "$out/$tarball.part" "$out/$tarball"
  fi
  echo "$sha256  $out/$tarball" | sha256sum -c --quiet
  rm -rf "$out/ffmpeg-src" && mkdir -p "$out/ffmpeg-src"
  tar -xf "$out/$tarball" -C "$out/ffmpeg-src" --strip-components=1
  (cd "$out/ffmpeg-src" &&
   ./configure --prefix="$PWD/../ffmpeg" --disable-everything --disable-programs --disable-doc \
     --disable-network --disable-autodetect --enable-static --disable-shared --disable-avdevice \
     --disable-avfilter --disable-postproc --enable-protocol=file --enable-swscale \
     --enable-decoder=h264,hevc,mpeg1video,mpeg2video,mpeg4,vp8,vp9,mjpeg \
     --enable-demuxer=mov,matroska,mpegps,mpegvideo,avi,mpegts,h264 \
     --enable-parser=h264,hevc,mpegvideo,mpeg4video,vp8,vp9,mjpeg >/dev/null &&
   make -j"$(nproc)" >/dev/null && make install >/dev/null)
fi

libdir=/usr/lib/x86_64-linux-gnu
g++ "${flags[@]}" -static -s -I"$prefix/include" $sources benchmarks/scaling/loader_scaling.cc \
  "$prefix/lib/libavformat.a" "$prefix/lib/libavcodec.a" "$prefix/lib/libswscale.a" "$prefix/lib/libavutil.a" \
  "$libdir/libturbojpeg.a" "$libdir/libjpeg.a" -lm -o "$out/loader_scaling"
echo "built $out/loader_scaling"
