"""Sends UndefinedBehaviorSanitizer reports to files, for `make test-asan`.

`make test-asan` installs this module into its venv (.venv-asan) with a
one-line .pth file, so it runs at the start of every interpreter of that
venv: the test run itself and every spawn or forkserver child (a forked
child inherits the setting). It does nothing unless GOMP_UBSAN_LOG is set.

Why it is needed: with gcc, an extension built with
-fsanitize=address,undefined uses two runtimes, libasan and libubsan, and
each carries its own copy of the sanitizers' common code, including where
reports go. ASAN_OPTIONS=log_path sends ASan's reports to files, but
libubsan's attempt to do the same from UBSAN_OPTIONS=log_path calls
__sanitizer_set_report_path, which resolves to libasan's copy (the one
loaded first), so UBSan's own reports stay on stderr. A child's stderr is
often captured by the test that started it, and its report would be lost.
Here we call libubsan's own copy of that function (dlsym on libubsan's
handle finds its definition, not libasan's), so that its reports land in
GOMP_UBSAN_LOG.<pid> where the Makefile looks for them."""

import ctypes
import os


def _route():
    prefix = os.environ.get("GOMP_UBSAN_LOG")
    if not prefix:
        return
    try:  # only if LD_PRELOAD has loaded it already: never load it here
        ubsan = ctypes.CDLL("libubsan.so.1", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return
    ubsan.__sanitizer_set_report_path(os.fsencode(prefix))


_route()
