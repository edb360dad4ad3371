"""The leak check of `make test-asan`, run in every Python process of the ASan venv (.venv-asan).

`make asan-build` writes a .pth file into .venv-asan that runs this file at interpreter start-up; under the
ASan runtime (LD_PRELOAD) it registers an atexit handler that runs LeakSanitizer once, after the program and
every other atexit handler, *before* the interpreter's finalization. At that point everything the program
still holds is reachable (module globals, live objects, thread stacks), and with PYTHONMALLOC=malloc every
Python object is a malloc chunk that LSan scans, so what LSan reports is memory nobody can reach any more:
a real leak, e.g. engine memory whose owner forgot to free it. (A check after finalization, LSan's default,
reports the objects CPython, NumPy and TensorFlow never free at exit: thousands of allocations, which only
suppressions broad enough to hide the engine's own leaks would silence.)

make test-asan sets ASAN_OPTIONS=detect_leaks=1:leak_check_at_exit=0 (no second check after
finalization, and none in the third-party programs the tests start: ffmpeg, ffprobe, git) and
LSAN_OPTIONS=suppressions=tests/lsan.supp. A process that leaks prints LSan's report and a line naming this
check, and exits with status 23. Without the ASan runtime (the venv used on its own) this does nothing.
"""
import atexit
import ctypes
import os
import sys

LEAK_EXIT_STATUS = 23  # LeakSanitizer's own exit status when it runs standalone


def _install() -> None:
    try:
        check = ctypes.CDLL(None).__lsan_do_recoverable_leak_check
    except AttributeError:  # no sanitizer runtime in this process
        return
    check.restype = ctypes.c_int

    def leak_check() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, ValueError, OSError):  # replaced or closed by the program
                pass
        # 0 when detect_leaks=0 (LSan then checks nothing) or when no leak was found.
        if check():
            os.write(2, f"lsan_at_exit: LeakSanitizer found leaks in process {os.getpid()} (report above); "
                        f"exit status {LEAK_EXIT_STATUS}\n".encode())
            os._exit(LEAK_EXIT_STATUS)

    atexit.register(leak_check)


_install()
