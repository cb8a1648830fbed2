"""The build's warning and sanitizer switches (setup.py), without building.

-Werror only where we choose the compiler (CI=true, GOMP_WERROR=1), never in
a user's plain `pip install`; GOMP_SANITIZE=1 (make test-asan) compiles and
links the extension with ASan and UBSan. The sanitized run itself is
`make test-asan`."""

import pytest

from test_build import load_setup

SANITIZERS = "-fsanitize=address,undefined"


@pytest.fixture
def setup_env(monkeypatch):
    for name in ("CI", "GOMP_WERROR", "GOMP_SANITIZE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_plain_install_warns_but_never_fails_on_a_warning(setup_env):
    compile_args, link_args = load_setup().extension_flags()
    assert "-Wall" in compile_args and "-Wextra" in compile_args
    assert "-Werror" not in compile_args
    assert SANITIZERS not in compile_args + link_args


@pytest.mark.parametrize("name, value", [("CI", "true"), ("CI", "1"), ("GOMP_WERROR", "1")])
def test_ci_or_gomp_werror_turns_warnings_into_errors(setup_env, name, value):
    setup_env.setenv(name, value)
    compile_args, _ = load_setup().extension_flags()
    assert "-Werror" in compile_args


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_ci_false_is_not_ci(setup_env, value):
    setup_env.setenv("CI", value)
    compile_args, _ = load_setup().extension_flags()
    assert "-Werror" not in compile_args


def test_gomp_sanitize_compiles_and_links_with_asan_and_ubsan(setup_env):
    setup_env.setenv("GOMP_SANITIZE", "1")
    compile_args, link_args = load_setup().extension_flags()
    for args in (compile_args, link_args):
        assert SANITIZERS in args
        assert "-fno-sanitize-recover=undefined" in args
    assert "-fno-omit-frame-pointer" in compile_args
    # CPython's CFLAGS (inherited by every extension) define signed overflow
    # with -fwrapv; undone so that UBSan checks for it in gomp's C.
    assert "-fno-wrapv" in compile_args
