"""The runner of CPython's multiprocessing suite (tests_py/cpython/): its
watchdog, its outcome records, its alias check and its expected-failures
comparison, exercised on a small unittest module (cpython/selftest_suite.py)
instead of the CPython suite."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import HERE

CPYTHON = os.path.join(HERE, "cpython")


def load(name):
    spec = importlib.util.spec_from_file_location(
        "_runner_" + name, os.path.join(CPYTHON, name + ".py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


run_suite = load("run_suite")
check = load("_suite_check")


@pytest.fixture(scope="module")
def selftest(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(CPYTHON, "run_suite.py"),
            "--python",
            sys.executable,
            "--module",
            "selftest_suite",
            "--module-path",
            CPYTHON,
            "--timeout",
            "5",
            "--results",
            str(results),
            "--no-expected",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    with open(results / "custom.json") as f:
        data = json.load(f)
    return proc, data, {e["id"]: e for e in data["results"]}


def test_outcomes_are_recorded(selftest):
    proc, data, by_id = selftest
    outcome = {k: v["outcome"] for k, v in by_id.items()}
    assert outcome["A_Outcomes.test_1_pass"] == "passed"
    assert outcome["A_Outcomes.test_2_fail"] == "failed"
    assert "AssertionError: 1 != 2" in by_id["A_Outcomes.test_2_fail"]["tb"]
    assert outcome["A_Outcomes.test_3_error"] == "failed"
    assert "RuntimeError: boom" in by_id["A_Outcomes.test_3_error"]["tb"]
    assert outcome["A_Outcomes.test_4_skip"] == "skipped"
    assert by_id["A_Outcomes.test_4_skip"]["reason"] == "not here"
    assert outcome["A_Outcomes.test_5_subtest"] == "failed"
    assert "subtest (i=1)" in by_id["A_Outcomes.test_5_subtest"]["tb"]
    assert data["tests"] == 22


def test_a_hang_is_killed_with_a_stack_dump_and_the_run_continues(selftest):
    proc, data, by_id = selftest
    hang = by_id["A_Outcomes.test_6_hang"]
    assert hang["outcome"] == "failed" and hang["reason"].startswith("timeout")
    assert "in test_6_hang" in hang["tb"]  # faulthandler's dump of the worker
    assert by_id["A_Outcomes.test_8_after"]["outcome"] == "passed"


def test_a_crash_is_a_failure_and_the_run_continues(selftest):
    proc, data, by_id = selftest
    crash = by_id["A_Outcomes.test_7_crash"]
    assert crash["outcome"] == "failed" and "signal 6" in crash["reason"]
    assert [r["id"] for r in data["restarts"]] == [
        "A_Outcomes.test_6_hang",
        "A_Outcomes.test_7_crash",
        "C_SetUpClassHangs.setUpClass",
    ]


def test_class_fixtures(selftest):
    proc, data, by_id = selftest
    for t in ("B_SetUpClassFails.test_one", "B_SetUpClassFails.test_two"):
        assert by_id[t]["outcome"] == "failed" and by_id[t]["reason"] == "setUpClass failed"
        assert "class setup failed" in by_id[t]["tb"]
    assert by_id["C_SetUpClassHangs.test_one"]["reason"].startswith("setUpClass: timeout")
    assert by_id["D_TearDownClassFails.test_one"]["outcome"] == "passed"
    teardown = by_id["D_TearDownClassFails.tearDownClass"]
    assert teardown["outcome"] == "failed" and "teardown failed" in teardown["tb"]


def test_every_escape_is_detected_and_fails_its_test(selftest):
    proc, data, by_id = selftest
    # One launch may be recorded more than once (seen on 3.14): count tests.
    escaped = sorted({e["test"] for e in data["alias_check"]["escapes"]})
    assert escaped == [
        "E_Alias.test_escape_alias_removed",
        "E_Alias.test_escape_clean_environment",
        "E_Alias.test_escape_dash_S_other_home",
        "E_Alias.test_escape_shell_command",
    ]
    for t in escaped:
        assert by_id[t]["outcome"] == "failed" and by_id[t]["reason"].startswith("alias escape")
    for t in (
        "E_Alias.test_spawn_child_gets_gomp",
        "E_Alias.test_dash_I_gets_gomp",
        "E_Alias.test_dash_S_in_the_shim_directory_gets_gomp",
        "E_Alias.test_dash_S_elsewhere_gets_gomp",
        "E_Alias.test_harmless_unreached_launch",
    ):
        assert by_id[t]["outcome"] == "passed", by_id[t]
    assert data["alias_check"]["via_shim"] >= 1
    assert data["alias_check"]["unreached_launches"] >= 1
    assert "ESCAPE" in proc.stdout and proc.returncode == 1


def test_environment_changes_are_reported(selftest):
    proc, data, by_id = selftest
    assert by_id["F_Env.test_alters_environment"]["env_changed"] is True
    assert by_id["F_Env.test_alters_environment"]["outcome"] == "passed"
    assert "environment changed: F_Env.test_alters_environment" in proc.stdout
    assert "environment changed: F_Env.tearDownClass" in proc.stdout


def test_an_environment_change_fails_unless_listed_with_env(tmp_path):
    run = FakeRun("fork", {"T.test_ok": "passed", "T.test_leaky": "passed"})
    run._entries[1]["env_changed"] = True
    run.env_fixtures = ["T.tearDownClass"]
    path = tmp_path / "expected.txt"
    path.write_text("")
    out = run_suite.compare(run, run_suite.Expectations(str(path)), {"fork": set()})
    assert out["unexpected_env_changes"] == ["T.test_leaky", "T.tearDownClass"]
    assert out["unexpected_failures"] == []
    path.write_text(
        "fork T.test_leaky  [env] stock leaves it too\nall T.tearDownClass  [env] stock too\n"
    )
    exp = run_suite.Expectations(str(path))
    assert not exp.errors
    out = run_suite.compare(run, exp, {"fork": set()})
    assert out["unexpected_env_changes"] == [] and out["env_changed"] == [
        "T.test_leaky",
        "T.tearDownClass",
    ]


def test_final_line_counts(selftest):
    proc, data, by_id = selftest
    assert proc.stdout.splitlines()[-3].endswith("9 passed, 13 failed, 1 skipped")
    assert data["counts"] == dict(passed=9, failed=13, skipped=1)


# -- the pieces, without running anything ------------------------------------------------


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["py", "-E", "-S", "-O", "-c", "x"], ({"E", "S", "O"}, "c", "x")),
        (["py", "-IS", "-cimport x"], ({"I", "S"}, "c", "import x")),
        (["py", "-X", "faulthandler", "-I", "script.py", "a"], ({"I"}, "script", "script.py")),
        (["py", "-Wignore", "-m", "mod"], (set(), "m", "mod")),
        (["py", "-B", "-"], ({"B"}, "stdin", None)),
    ],
)
def test_parse_python_argv(argv, expected):
    assert check.parse_python_argv(argv) == expected


def test_launch_analysis(tmp_path):
    venv = sys.prefix
    exe = os.path.join(venv, "bin", "python")
    env = {"GOMP_AS_MULTIPROCESSING": "1", "GOMP_SUITE_CHECK": "x", "GOMP_SUITE_LOG": "y"}
    site = check.analyze_launch(
        exe, [exe, "-I", "-c", "import multiprocessing"], str(tmp_path), env, venv
    )
    assert site["hooked"] and site["checked"] and site["mentions"]
    bare = check.analyze_launch(
        exe, [exe, "-S", "-c", "import multiprocessing"], str(tmp_path), env, venv
    )
    assert not bare["hooked"] and "-S without the shim" in bare["why"]
    (tmp_path / "multiprocessing.py").write_text("# " + check._SHIM_MARKER + "\n")
    shimmed = check.analyze_launch(
        exe, [exe, "-S", "-c", "import multiprocessing"], str(tmp_path), env, venv
    )
    assert shimmed["hooked"]
    isolated = check.analyze_launch(
        exe, [exe, "-I", "-S", "-c", "import multiprocessing"], str(tmp_path), env, venv
    )
    assert not isolated["hooked"]
    other = check.analyze_launch(
        "/usr/bin/python3", ["/usr/bin/python3", "-c", "pass"], str(tmp_path), env, venv
    )
    assert not other["hooked"] and not other["mentions"]
    assert check.analyze_launch("/bin/true", ["/bin/true"], str(tmp_path), env, venv) is None


class FakeRun:
    def __init__(self, suite, outcomes):
        self.suite = suite
        self.plan = list(outcomes)
        self.only = None
        self._entries = [dict(id=k, outcome=v, reason="r") for k, v in outcomes.items()]
        self.env_fixtures = []

    def entries(self):
        return self._entries


def test_expectations_and_comparison(tmp_path):
    path = tmp_path / "expected.txt"
    path.write_text(
        "# comment\n"
        "all  T.test_fails  not implemented\n"
        "fork T.test_passes  listed but passes\n"
        "spawn T.test_gone  not in the suite\n"
        "fork T.test_flaky  [flaky] a race in the test\n"
        "fork T.test_gomp_skip  skipped by gomp\n"
    )
    exp = run_suite.Expectations(str(path))
    assert not exp.errors
    assert exp.get("forkserver", "T.test_fails")[0] == "not implemented"
    run = FakeRun(
        "fork",
        {
            "T.test_fails": "failed",
            "T.test_passes": "passed",
            "T.test_new_failure": "failed",
            "T.test_flaky": "passed",
            "T.test_gomp_skip": "skipped",
            "T.test_other_skip": "skipped",
            "T.test_stock_skip": "skipped",
        },
    )
    out = run_suite.compare(run, exp, {"fork": {"T.test_stock_skip"}})
    assert out["unexpected_failures"] == ["T.test_new_failure"]
    assert out["unexpected_passes"] == ["T.test_passes"]
    assert out["unexpected_skips"] == ["T.test_other_skip (r)"]
    assert out["stale"] == []
    run = FakeRun("spawn", {"T.test_fails": "failed"})
    assert run_suite.compare(run, exp, None)["stale"] == ["T.test_gone: not in the suite"]


def test_a_version_without_a_list_may_not_fail_anything(tmp_path):
    exp = run_suite.expectations_for("3.99", here=str(tmp_path))
    assert exp.path is None and not exp.errors
    run = FakeRun("fork", {"T.test_ok": "passed", "T.test_broken": "failed"})
    out = run_suite.compare(run, exp, {"fork": set()})
    assert out["unexpected_failures"] == ["T.test_broken"]
    (tmp_path / "expected_failures-3.99.txt").write_text("fork T.test_broken  known\n")
    exp = run_suite.expectations_for("3.99", here=str(tmp_path))
    assert run_suite.compare(run, exp, {"fork": set()})["unexpected_failures"] == []


def test_expectations_need_a_reason(tmp_path):
    path = tmp_path / "expected.txt"
    path.write_text("fork T.test_x\nnope T.test_y reason\n")
    exp = run_suite.Expectations(str(path))
    assert len(exp.errors) == 2


def run_broken(tmp_path, *extra):
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(CPYTHON, "run_suite.py"),
            "--python",
            sys.executable,
            "--module",
            "selftest_broken",
            "--module-path",
            CPYTHON,
            "--results",
            str(tmp_path),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    with open(tmp_path / "custom.json") as f:
        return proc, json.load(f)


def test_a_suite_that_does_not_import_fails_every_test(tmp_path):
    proc, data = run_broken(tmp_path, "--no-expected")
    assert proc.returncode == 1
    assert (
        "THE SUITE DOES NOT IMPORT: the suite failed to import: NotImplementedError" in proc.stdout
    )
    assert "0 passed, 2 failed, 0 skipped" in proc.stdout
    assert data["tests"] == 2 and data["counts"]["failed"] == 2


def test_an_import_failure_can_only_be_expected_test_by_test(tmp_path):
    listed = tmp_path / "expected.txt"
    listed.write_text("custom Broken.test_a  does not import\n")
    proc, data = run_broken(tmp_path, "--expected", str(listed))
    assert proc.returncode == 1 and "UNEXPECTED FAILURE: Broken.test_b" in proc.stdout
    listed.write_text("custom Broken.test_a  does not import\ncustom Broken.test_b  same\n")
    proc, data = run_broken(tmp_path, "--expected", str(listed))
    assert proc.returncode == 0, proc.stdout
