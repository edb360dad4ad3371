import subprocess
import sys

import cvrl_fast


def test_build_info_names_native_libraries():
    info = cvrl_fast.build_info()
    assert "libavcodec" in info and "libturbojpeg" in info


def test_import_does_not_import_tensorflow():
    code = "import sys, cvrl_fast; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
