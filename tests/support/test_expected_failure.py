"""Behaviour of expected_failure blocks, checked through real pytest and unittest runs.

Each test writes a small test module, runs it with pytest's ``pytester`` (in process)
or with ``python -m unittest`` (in a subprocess), and reads the outcome the way a
developer or CI would: the terminal summary, the exit code, the JUnit XML.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.expected_failure import (
    RUN_ENV_VAR,
    ExpectedFailure,
    expected_failure,
)

pytest_plugins = ["pytester"]

REPO_ROOT = Path(__file__).resolve().parents[2]

HEADER = """\
import pytest
from tests.support.expected_failure import expected_failure
"""

TOMORROW = (dt.date.today() + dt.timedelta(days=1)).isoformat()
YESTERDAY = (dt.date.today() - dt.timedelta(days=1)).isoformat()


def line_of(source: str, text: str, occurrence: int = 1) -> int:
    """Return the 1-based line of the n-th line of ``source`` containing ``text``."""
    lines = [n for n, line in enumerate(source.splitlines(), 1) if text in line]
    return lines[occurrence - 1]


@pytest.fixture
def run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[pytest.RunResult, str]]:
    """Write ``test_sample.py`` from a body and run pytest on it with ``-ra``.

    Returns the run's result and the module's full source, to find line numbers in.
    """
    # Wide enough that summary lines are not cut.
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv(RUN_ENV_VAR, raising=False)
    pytester.makeconftest('pytest_plugins = ["tests.support.expected_failure"]\n')

    def run(body: str, *args: str) -> tuple[pytest.RunResult, str]:
        source = HEADER + textwrap.dedent(body)
        pytester.makepyfile(test_sample=source)
        # The outer run has set up Django's test environment already; an inner
        # pytest-django would set it up a second time in the same process.
        options = ("-ra", "-p", "no:cacheprovider", "-p", "no:django")
        return pytester.runpytest(*options, *args), source

    return run


def junit_cases(path: Path) -> dict[str, ET.Element]:
    """Return the JUnit XML file's ``<testcase>`` elements by name."""
    root = ET.parse(path).getroot()
    return {case.get("name", ""): case for case in root.iter("testcase")}


# ---------------------------------------------------------------------------
# Outcomes under pytest


def test_failing_block_is_expected_and_test_passes(run):
    """An assertion failing inside the block is an xfail; the test itself passes."""
    result, source = run(
        """
        def test_page():
            assert 1 + 1 == 2
            with expected_failure("audit trail not rendered yet"):
                assert "audit" in "<html></html>"
            assert 2 + 2 == 4
        """
    )

    line = line_of(source, "with expected_failure")
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            f"XFAIL test_sample.py::test_page[[]expected_failure:{line}[]] "
            "- audit trail not rendered yet"
        ]
    )
    assert result.ret == pytest.ExitCode.OK


def test_code_after_failing_block_still_runs(run):
    """The statements after an expected failure run: the block does not end the test."""
    result, _ = run(
        """
        def test_page():
            with expected_failure("known gap"):
                assert False
            print("after the block")
        """,
        "-s",
    )

    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*after the block*"])


def test_failure_after_block_fails_test(run):
    """An assertion after the block fails the test; the block is still an xfail."""
    result, _ = run(
        """
        def test_page():
            with expected_failure("known gap"):
                assert False
            assert 1 == 2, "real regression"
        """
    )

    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["FAILED test_sample.py::test_page - Assert*"])
    result.stdout.fnmatch_lines(["*real regression*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_failure_before_block_fails_test_and_skips_block(run):
    """An assertion before the block fails the test, which never reaches the block."""
    result, _ = run(
        """
        def test_page():
            assert 1 == 2, "real regression"
            with expected_failure("known gap"):
                assert False
        """
    )

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*real regression*"])
    result.stdout.no_fnmatch_line("XFAIL*")


def test_passing_block_fails_build_when_strict(run):
    """A strict block that passes fails, naming its file and line and the fix."""
    result, source = run(
        """
        def test_page():
            with expected_failure("fixed upstream?"):
                assert True
        """
    )

    line = line_of(source, "with expected_failure")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            f"FAILED test_sample.py::test_page[[]expected_failure:{line}[]] "
            "- [[]XPASS(strict)[]] fixed upstream?*",
            "FAILED test_sample.py::test_page - expected_failure block at "
            f"test_sample.py:{line} passed: remove the mark*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_passing_block_is_unexpected_pass_when_not_strict(run):
    """A non-strict block that passes is an xpass and the build stays green."""
    result, source = run(
        """
        def test_page():
            with expected_failure("flaky on CI", strict=False):
                assert True
        """
    )

    line = line_of(source, "with expected_failure")
    result.assert_outcomes(passed=1, xpassed=1)
    result.stdout.fnmatch_lines(
        [f"XPASS test_sample.py::test_page[[]expected_failure:{line}[]] - flaky on CI"]
    )
    assert result.ret == pytest.ExitCode.OK


def test_strict_pass_with_failure_elsewhere_reports_both(run):
    """A test that fails on its own shows its failure and the block's separately."""
    result, source = run(
        """
        def test_page():
            with expected_failure("fixed upstream?"):
                assert True
            assert 1 == 2, "real regression"
        """
    )

    line = line_of(source, "with expected_failure")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            f"FAILED test_sample.py::test_page[[]expected_failure:{line}[]] - *",
            "FAILED test_sample.py::test_page - AssertionError: real regression*",
        ]
    )


def test_other_exception_in_block_is_real_failure(run):
    """Only AssertionError is expected by default; a KeyError inside fails the test."""
    result, _ = run(
        """
        def test_page():
            with expected_failure("known gap"):
                {}["missing"]
        """
    )

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["FAILED test_sample.py::test_page - KeyError*"])
    result.stdout.no_fnmatch_line("XFAIL*")


def test_raises_makes_another_exception_the_expected_one(run):
    """With raises=KeyError, a KeyError is the expected failure."""
    result, _ = run(
        """
        def test_page():
            with expected_failure("lookup not implemented", raises=KeyError):
                {}["missing"]
        """
    )

    result.assert_outcomes(passed=1, xfailed=1)


def test_raises_excludes_assertion_error(run):
    """With raises=KeyError, an AssertionError in the block is a real failure."""
    result, _ = run(
        """
        def test_page():
            with expected_failure("lookup not implemented", raises=KeyError):
                assert False, "wrong value"
        """
    )

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*wrong value*"])


def test_match_accepts_matching_message(run):
    """A failure whose message matches ``match`` is expected."""
    result, _ = run(
        """
        def test_page():
            with expected_failure("totals off", match=r"total is \\d+"):
                assert False, "total is 41"
        """
    )

    result.assert_outcomes(passed=1, xfailed=1)


def test_match_rejects_other_message(run):
    """A failure whose message does not match ``match`` is a real failure."""
    result, _ = run(
        """
        def test_page():
            with expected_failure("totals off", match=r"total is \\d+"):
                assert False, "person missing"
        """
    )

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*person missing*"])


def test_skip_inside_block_skips_the_test(run):
    """pytest.skip() inside a block is not swallowed as an expected failure."""
    result, _ = run(
        """
        def test_page():
            with expected_failure("known gap", raises=Exception):
                pytest.skip("no server here")
        """
    )

    result.assert_outcomes(skipped=1)


# ---------------------------------------------------------------------------
# Nested blocks


def test_nested_blocks_both_failing_are_two_xfails(run):
    """Inner and outer blocks that each fail are reported as two expected failures."""
    result, source = run(
        """
        def test_page():
            with expected_failure("outer gap"):
                with expected_failure("inner gap"):
                    assert False, "inner"
                assert False, "outer"
        """
    )

    outer = line_of(source, 'expected_failure("outer gap")')
    inner = line_of(source, 'expected_failure("inner gap")')
    result.assert_outcomes(passed=1, xfailed=2)
    result.stdout.fnmatch_lines(
        [
            f"XFAIL test_sample.py::test_page[[]expected_failure:{inner}[]] "
            "- inner gap",
            f"XFAIL test_sample.py::test_page[[]expected_failure:{outer}[]] "
            "- outer gap",
        ]
    )


def test_outer_block_passes_when_only_inner_fails(run):
    """An inner expected failure does not reach the outer block, which then passes."""
    result, source = run(
        """
        def test_page():
            with expected_failure("outer gap"):
                with expected_failure("inner gap"):
                    assert False
        """
    )

    outer = line_of(source, 'expected_failure("outer gap")')
    result.assert_outcomes(failed=2, xfailed=1)
    result.stdout.fnmatch_lines(
        [f"FAILED test_sample.py::test_page[[]expected_failure:{outer}[]] - *"]
    )


def test_inner_strict_pass_is_not_swallowed_by_outer(run):
    """A passing strict inner block fails the build even inside a failing outer one."""
    result, source = run(
        """
        def test_page():
            with expected_failure("outer gap"):
                with expected_failure("inner fixed?"):
                    assert True
                assert False
        """
    )

    inner = line_of(source, 'expected_failure("inner fixed?")')
    result.assert_outcomes(failed=2, xfailed=1)
    result.stdout.fnmatch_lines(
        [f"FAILED test_sample.py::test_page[[]expected_failure:{inner}[]] - *"]
    )


# ---------------------------------------------------------------------------
# Naming and placement


def test_each_run_of_a_block_in_a_loop_is_its_own_entry(run):
    """A block run twice by a loop gives two entries, the second suffixed ``#2``."""
    result, source = run(
        """
        def test_page():
            for value in (1, 2):
                with expected_failure("odd values"):
                    assert value == 0
        """
    )

    line = line_of(source, "with expected_failure")
    result.assert_outcomes(passed=1, xfailed=2)
    result.stdout.fnmatch_lines(
        [
            f"XFAIL test_sample.py::test_page[[]expected_failure:{line}[]] - *",
            f"XFAIL test_sample.py::test_page[[]expected_failure:{line}#2[]] - *",
        ]
    )


def test_parametrized_test_gets_label_inside_its_parameters(run):
    """A block in a parametrized test joins the test's parameters in its id."""
    result, source = run(
        """
        @pytest.mark.parametrize("value", [1])
        def test_page(value):
            with expected_failure("odd values"):
                assert value == 0
        """
    )

    line = line_of(source, "with expected_failure")
    result.stdout.fnmatch_lines(
        [f"XFAIL test_sample.py::test_page[[]1-expected_failure:{line}[]] - *"]
    )


def test_block_in_fixture_is_reported(run):
    """A block inside a fixture's setup is reported like one in the test body."""
    result, source = run(
        """
        @pytest.fixture
        def person():
            with expected_failure("names not normalised"):
                assert "ada " == "ada"
            return "ada"

        def test_page(person):
            assert person == "ada"
        """
    )

    line = line_of(source, "with expected_failure")
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [f"XFAIL test_sample.py::test_page[[]expected_failure:{line}[]] - *"]
    )


def test_block_in_helper_module_is_labelled_with_its_file(run, pytester):
    """A block in another file is labelled with that file's name and line."""
    pytester.makepyfile(
        checks=HEADER
        + textwrap.dedent(
            """
            def check_page():
                with expected_failure("audit trail not rendered yet"):
                    assert False
            """
        )
    )
    result, _ = run(
        """
        from checks import check_page

        def test_page():
            check_page()
        """
    )

    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        ["XFAIL test_sample.py::test_page[[]expected_failure:checks.py:5[]] - *"]
    )


def test_unittest_testcase_under_pytest(run):
    """A block in a unittest.TestCase method run by pytest is reported the same way."""
    result, source = run(
        """
        import unittest

        class PageTests(unittest.TestCase):
            def test_page(self):
                with expected_failure("audit trail not rendered yet"):
                    self.assertIn("audit", "<html></html>")
                self.assertEqual(1, 1)
        """
    )

    line = line_of(source, "with expected_failure")
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "XFAIL test_sample.py::PageTests::test_page"
            f"[[]expected_failure:{line}[]] - audit trail not rendered yet"
        ]
    )


# ---------------------------------------------------------------------------
# Blocks in threads

THREADED = """
import threading

started = threading.Event()
release = threading.Event()
worker = []


def check_later():
    with expected_failure({reason!r}):
        started.set()
        release.wait(10)
        assert {holds}


def test_starts_a_thread_it_never_joins():
    worker.append(threading.Thread(target=check_later))
    worker[0].start()
    started.wait(10)


def test_runs_while_the_block_ends():
    release.set()
    worker[0].join(10)
"""


def test_block_in_a_joined_thread_is_reported_with_its_test(run):
    """A block run by a thread the test joins is reported as the test's own."""
    result, source = run(
        """
        import threading

        def test_page():
            def check():
                with expected_failure("rendered off the main thread"):
                    assert False
            thread = threading.Thread(target=check)
            thread.start()
            thread.join()
        """
    )

    line = line_of(source, "with expected_failure")
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines([f"XFAIL test_sample.py::test_page[[]*:{line}[]]*"])


def assert_strict_pass_outlived_its_test(result: pytest.RunResult, source: str) -> None:
    """THREADED's strict pass is listed as outliving its test, and fails the run."""
    line = line_of(source, "with expected_failure")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*expected_failure blocks that outlived their test*",
            "FAILED test_sample.py::test_starts_a_thread_it_never_joins"
            f"[[]expected_failure:{line}[]] at test_sample.py:{line}:"
            " [[]XPASS(strict)[]] fixed upstream? (it ended after its test*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_strict_pass_after_its_test_ended_fails_the_session(run):
    """A block ending after its test is listed at the end; a strict pass fails."""
    result, source = run(THREADED.format(reason="fixed upstream?", holds=True))

    assert_strict_pass_outlived_its_test(result, source)


def test_expected_failure_after_its_test_ended_is_listed_and_passes(run):
    """A block failing as expected after its test is listed; the run stays green."""
    result, _ = run(THREADED.format(reason="known gap", holds=False))

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["XFAILED test_sample.py::test_starts_a_thread_it_never_joins*known gap*"]
    )
    assert result.ret == pytest.ExitCode.OK


# ---------------------------------------------------------------------------
# Terminal


def test_verbose_run_lists_block_with_reason(run):
    """At -v each block has its own line, with its outcome and reason."""
    result, source = run(
        """
        def test_page():
            with expected_failure("audit trail not rendered yet"):
                assert False
        """,
        "-v",
    )

    line = line_of(source, "with expected_failure")
    result.stdout.fnmatch_lines(
        [
            f"test_sample.py::test_page[[]expected_failure:{line}[]] XFAIL "
            "(audit trail not rendered yet)*",
            "test_sample.py::test_page PASSED*",
        ]
    )


def test_progress_counts_tests_not_blocks(run):
    """Blocks do not count towards the progress percentage, which ends at 100%."""
    result, _ = run(
        """
        def test_one():
            with expected_failure("gap"):
                assert False

        def test_two():
            with expected_failure("gap"):
                assert False
        """
    )

    result.stdout.fnmatch_lines(["test_sample.py x.x. * [[]100%[]]"])


def test_last_failed_reruns_test_with_strict_pass(pytester, monkeypatch):
    """--lf reruns a test whose only failure is a strict block that passed."""
    monkeypatch.delenv(RUN_ENV_VAR, raising=False)
    pytester.makeconftest('pytest_plugins = ["tests.support.expected_failure"]\n')
    pytester.makepyfile(
        test_sample=HEADER
        + textwrap.dedent(
            """
            def test_fixed():
                with expected_failure("fixed upstream?"):
                    assert True

            def test_other():
                assert True
            """
        )
    )
    pytester.runpytest("-p", "no:django")

    result = pytester.runpytest("--lf", "-p", "no:django", "-v")

    result.stdout.fnmatch_lines(["test_sample.py::test_fixed FAILED*"])
    result.stdout.no_fnmatch_line("*test_other*")


def test_unittest_case_under_pytest_without_plugin_runs_plainly(pytester, monkeypatch):
    """Without the plugin, pytest runs a TestCase block plainly, not as an xfail."""
    monkeypatch.delenv(RUN_ENV_VAR, raising=False)
    pytester.makepyfile(
        test_sample=HEADER
        + textwrap.dedent(
            """
            import unittest

            class PageTests(unittest.TestCase):
                def test_page(self):
                    with expected_failure("audit trail not rendered yet"):
                        self.assertIn("audit", "<html></html>")
            """
        )
    )

    # In a subprocess: in process, the outer run's plugin would see the block.
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    result = pytester.runpytest_subprocess("-p", "no:django")

    result.assert_outcomes(failed=1)


# ---------------------------------------------------------------------------
# The switch


def test_switch_runs_blocks_as_plain_assertions(run):
    """--run-expected-failures lets a failing block fail the test as usual."""
    result, _ = run(
        """
        def test_page():
            with expected_failure("audit trail not rendered yet"):
                assert False, "no audit"
        """,
        "--run-expected-failures",
    )

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "expected_failure blocks: run as plain assertions",
            "FAILED test_sample.py::test_page - AssertionError: no audit*",
        ]
    )


def test_switch_lets_passing_block_pass(run):
    """Under the switch a passing block is plain code: no entry, no strict failure."""
    result, _ = run(
        """
        def test_page():
            with expected_failure("fixed upstream?"):
                assert True
        """,
        "--run-expected-failures",
    )

    result.assert_outcomes(passed=1)


def test_runxfail_works_like_switch(run):
    """pytest's --runxfail also runs the marked blocks as plain assertions."""
    result, _ = run(
        """
        def test_page():
            with expected_failure("audit trail not rendered yet"):
                assert False, "no audit"
        """,
        "--runxfail",
    )

    result.assert_outcomes(failed=1)


def test_environment_variable_works_like_switch(run, monkeypatch):
    """PGZEN_RUN_EXPECTED_FAILURES=1 has the effect of --run-expected-failures."""
    monkeypatch.setenv(RUN_ENV_VAR, "1")
    result, _ = run(
        """
        def test_page():
            with expected_failure("audit trail not rendered yet"):
                assert False, "no audit"
        """
    )

    result.assert_outcomes(failed=1)


# ---------------------------------------------------------------------------
# Expiry


def test_block_failing_before_expiry_is_expected(run):
    """Until its expiry date a failing block is an ordinary expected failure."""
    result, _ = run(
        f"""
        def test_page():
            with expected_failure("audit trail", expires="{TOMORROW}"):
                assert False
        """
    )

    result.assert_outcomes(passed=1, xfailed=1)


def test_block_still_failing_after_expiry_fails_build(run):
    """After its expiry date a failing block fails, and the test still runs on."""
    result, source = run(
        f"""
        def test_page():
            with expected_failure("audit trail", expires="{YESTERDAY}"):
                assert False, "no audit"
            print("after the block")
        """,
        "-s",
    )

    line = line_of(source, "with expected_failure")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*after the block*",
            f"FAILED test_sample.py::test_page[[]expected_failure:{line}[]] "
            f"- [[]EXPIRED {YESTERDAY}[]] audit trail*",
        ]
    )
    result.stdout.fnmatch_lines(
        [f"*still fails after its expiry date {YESTERDAY}: fix it or set a new date*"]
    )
    result.stdout.fnmatch_lines(["*AssertionError: no audit*"])


def test_expired_block_that_passes_asks_to_remove_mark(run):
    """A passing block past its date gets the usual strict pass failure."""
    result, _ = run(
        f"""
        def test_page():
            with expected_failure("audit trail", expires="{YESTERDAY}"):
                assert True
        """
    )

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*[[]XPASS(strict)[]] audit trail*"])


# ---------------------------------------------------------------------------
# JUnit XML


def test_junit_gives_each_block_its_own_testcase(run, pytester):
    """In JUnit XML a block is a testcase beside its test, with the matching tag."""
    result, source = run(
        """
        def test_gap():
            with expected_failure("audit trail not rendered yet"):
                assert False

        def test_fixed():
            with expected_failure("fixed upstream?"):
                assert True

        def test_flaky():
            with expected_failure("flaky on CI", strict=False):
                assert True
        """,
        "--junitxml=report.xml",
    )

    gap = line_of(source, "audit trail not rendered yet")
    fixed = line_of(source, "fixed upstream?")
    flaky = line_of(source, "flaky on CI")
    cases = junit_cases(pytester.path / "report.xml")
    suite = ET.parse(pytester.path / "report.xml").getroot().find("testsuite")
    assert suite is not None

    assert set(cases) == {
        "test_gap",
        f"test_gap[expected_failure:{gap}]",
        "test_fixed",
        f"test_fixed[expected_failure:{fixed}]",
        "test_flaky",
        f"test_flaky[expected_failure:{flaky}]",
    }
    assert {case.get("classname") for case in cases.values()} == {"test_sample"}
    assert list(cases["test_gap"]) == []
    skipped = cases[f"test_gap[expected_failure:{gap}]"].find("skipped")
    assert skipped is not None
    assert skipped.get("type") == "pytest.xfail"
    assert skipped.get("message") == "audit trail not rendered yet"

    failure = cases[f"test_fixed[expected_failure:{fixed}]"].find("failure")
    assert failure is not None
    assert "[XPASS(strict)] fixed upstream?" in failure.get("message", "")
    assert f"test_sample.py:{fixed} passed" in failure.get("message", "")
    assert cases["test_fixed"].find("failure") is not None

    assert list(cases[f"test_flaky[expected_failure:{flaky}]"]) == []
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (
        "6",
        "2",
        "1",
    )


# ---------------------------------------------------------------------------
# Reports crossing processes (pytest-xdist)


def test_block_outcomes_survive_report_serialisation(pytester):
    """Block outcomes ride on the report through pytest's (xdist's) serialisation."""
    config = pytester.parseconfigure("-p", "tests.support.expected_failure")
    report = pytest.TestReport(
        nodeid="test_sample.py::test_page",
        location=("test_sample.py", 1, "test_page"),
        keywords={},
        outcome="passed",
        longrepr=None,
        when="call",
        expected_failure_blocks=[{"outcome": "xfailed", "reason": "gap"}],
    )

    data = config.hook.pytest_report_to_serializable(config=config, report=report)
    again = config.hook.pytest_report_from_serializable(config=config, data=data)

    assert again.expected_failure_blocks == [{"outcome": "xfailed", "reason": "gap"}]


def run_on_xdist(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    body: str,
    *args: str,
) -> tuple[pytest.RunResult, str]:
    """Write ``test_sample.py`` from a body and run it in a pytest subprocess.

    The subprocess is where pytest-xdist can start workers (``args`` name them).
    """
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.delenv(RUN_ENV_VAR, raising=False)
    pytester.makeconftest('pytest_plugins = ["tests.support.expected_failure"]\n')
    source = HEADER + textwrap.dedent(body)
    pytester.makepyfile(test_sample=source)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:django", *args
    )
    return result, source


def test_blocks_run_on_xdist_workers_are_reported_by_the_controller(
    pytester, monkeypatch
):
    """Under ``-n 2`` the controller reports each block once, as in one process."""
    result, source = run_on_xdist(
        pytester,
        monkeypatch,
        """
        def test_gap():
            with expected_failure("audit trail not rendered yet"):
                assert False

        def test_fixed():
            with expected_failure("fixed upstream?"):
                assert True

        def test_plain():
            assert True
        """,
        "-ra",
        "-n",
        "2",
    )

    gap = line_of(source, "audit trail not rendered yet")
    fixed = line_of(source, "fixed upstream?")
    result.assert_outcomes(passed=2, failed=2, xfailed=1)
    result.stdout.fnmatch_lines(
        [f"XFAIL test_sample.py::test_gap[[]expected_failure:{gap}[]]*"]
    )
    result.stdout.fnmatch_lines(
        [f"FAILED test_sample.py::test_fixed[[]expected_failure:{fixed}[]]*"]
    )
    assert result.stdout.str().count(f"expected_failure:{gap}]") == 1
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_block_outliving_its_test_on_an_xdist_worker_is_reported_by_the_controller(
    pytester, monkeypatch
):
    """A worker's late block reaches the controller; a strict pass fails the run."""
    # One worker: both tests of the module must share the thread.
    result, source = run_on_xdist(
        pytester,
        monkeypatch,
        THREADED.format(reason="fixed upstream?", holds=True),
        "-n",
        "1",
    )

    assert_strict_pass_outlived_its_test(result, source)


# ---------------------------------------------------------------------------
# Plain unittest

UNITTEST_MODULE = """\
import unittest

from tests.support.expected_failure import expected_failure


class PageTests(unittest.TestCase):
    def test_gap(self):
        with expected_failure("audit trail not rendered yet"):
            self.assertIn("audit", "<html></html>")
        self.assertEqual(1, 1)

    def test_fixed(self):
        with expected_failure("fixed upstream?"):
            self.assertEqual(1, 1)

    def test_flaky(self):
        with expected_failure("flaky on CI", strict=False):
            self.assertEqual(1, 1)

    def test_expired(self):
        with expected_failure("old gap", expires="{yesterday}"):
            self.assertEqual(1, 2)

    def test_regression(self):
        with expected_failure("audit trail not rendered yet"):
            self.assertIn("audit", "<html></html>")
        self.assertEqual(1, 2, "real regression")
"""


@pytest.fixture
def run_unittest(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., pytest.RunResult]:
    """Run ``python -m unittest -v`` on a module in a subprocess."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), "."]))
    monkeypatch.delenv(RUN_ENV_VAR, raising=False)

    def run(source: str, *tests: str) -> pytest.RunResult:
        pytester.makepyfile(ut_sample=source)
        return pytester.run(sys.executable, "-m", "unittest", "-v", *tests)

    return run


def test_unittest_reports_expected_failures_and_unexpected_successes(run_unittest):
    """Under unittest, blocks show as expected failures / unexpected successes."""
    source = UNITTEST_MODULE.replace("{yesterday}", YESTERDAY)
    result = run_unittest(source, "ut_sample")

    fixed = line_of(source, "with expected_failure", 2)
    expired = line_of(source, "with expected_failure", 4)
    assert result.ret == 1
    result.stderr.fnmatch_lines(
        [
            "FAILED (failures=2, expected failures=2, unexpected successes=1)",
        ]
    )
    result.stderr.fnmatch_lines(
        [
            f"UNEXPECTED SUCCESS: test_fixed (ut_sample.PageTests*) "
            f"[[]expected_failure at ut_sample.py:{fixed}: fixed upstream?; "
            "passed, remove the mark[]]",
        ]
    )
    result.stderr.fnmatch_lines(
        [
            f"FAIL: test_expired (ut_sample.PageTests*) [[]expected_failure at "
            f"ut_sample.py:{expired}: old gap; expired {YESTERDAY}[]]",
        ]
    )
    result.stderr.fnmatch_lines(["FAIL: test_regression (ut_sample.PageTests*)"])
    result.stderr.fnmatch_lines(["*AssertionError: 1 != 2 : real regression"])
    result.stderr.fnmatch_lines(
        [
            f"*ut_sample.py:{line_of(source, 'flaky on CI')}: "
            "ExpectedFailurePassedWarning: expected_failure block at "
            "ut_sample.py:* passed: remove the mark if the fix is in (flaky on CI)",
        ]
    )
    result.stderr.fnmatch_lines(
        ["test_gap (ut_sample.PageTests*) ... expected failure"]
    )
    result.stderr.no_fnmatch_line("FAIL: test_gap*")


def test_unittest_expected_failure_alone_keeps_run_green(run_unittest):
    """A unittest run whose only problem is an expected failure succeeds."""
    tests = ("ut_sample.PageTests.test_gap", "ut_sample.PageTests.test_flaky")
    result = run_unittest(UNITTEST_MODULE, *tests)

    assert result.ret == 0
    result.stderr.fnmatch_lines(["OK (expected failures=1)"])


def test_unittest_environment_variable_runs_blocks_plainly(run_unittest, monkeypatch):
    """PGZEN_RUN_EXPECTED_FAILURES=1 makes a unittest block fail its test."""
    monkeypatch.setenv(RUN_ENV_VAR, "1")
    result = run_unittest(UNITTEST_MODULE, "ut_sample.PageTests.test_gap")

    assert result.ret == 1
    result.stderr.fnmatch_lines(["FAILED (failures=1)"])


DJANGO_MODULE = """\
from django.test import SimpleTestCase

from tests.support.expected_failure import expected_failure


class PageTests(SimpleTestCase):
    def test_gap(self):
        with expected_failure("audit trail not rendered yet"):
            self.assertIn("audit", "<html></html>")
        self.assertEqual(1, 1)

    def test_fixed(self):
        with expected_failure("fixed upstream?"):
            self.assertEqual(1, 1)
"""

DJANGO_RUNNER = """\
import sys

import django
from django.conf import settings

settings.configure(DATABASES={}, INSTALLED_APPS=[])
django.setup()

from django.test.runner import DiscoverRunner

sys.exit(bool(DiscoverRunner(verbosity=2).run_tests(["dj_sample"])))
"""


def test_django_runner_reports_blocks_the_unittest_way(run_unittest, pytester):
    """Django's test runner shows a block in a SimpleTestCase like plain unittest."""
    pytester.makepyfile(dj_sample=DJANGO_MODULE, run_django=DJANGO_RUNNER)

    result = pytester.run(sys.executable, "run_django.py")

    assert result.ret == 1
    result.stderr.fnmatch_lines(
        ["FAILED (expected failures=1, unexpected successes=1)"]
    )
    result.stderr.fnmatch_lines(["UNEXPECTED SUCCESS: test_fixed (dj_sample.*"])


def test_block_outside_any_test_is_plain_code(pytester, monkeypatch):
    """Outside a running test a block hides nothing: its failure propagates."""
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    script = pytester.makepyfile(
        script=HEADER
        + textwrap.dedent(
            """
            with expected_failure("not a test"):
                assert False, "propagated"
            """
        )
    )

    result = pytester.run(sys.executable, str(script))

    assert result.ret == 1
    result.stderr.fnmatch_lines(["AssertionError: propagated"])


# ---------------------------------------------------------------------------
# Arguments


def test_reason_is_required():
    """An empty reason is refused when the block is created."""
    with pytest.raises(ValueError, match="needs a reason"):
        expected_failure(" ")


def test_raises_must_be_exception_types():
    """raises= refuses BaseException-only types such as KeyboardInterrupt."""
    with pytest.raises(TypeError, match="raises must be Exception subclasses"):
        expected_failure("gap", raises=KeyboardInterrupt)  # type: ignore[arg-type]


def test_expires_must_be_an_iso_date():
    """expires= refuses anything but YYYY-MM-DD or a date."""
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        expected_failure("gap", expires="31/12/2030")


def test_expires_accepts_a_date():
    """expires= takes a datetime.date as it is."""
    block = expected_failure("gap", expires=dt.date(2030, 12, 31))

    assert isinstance(block, ExpectedFailure)
    assert block.expires == dt.date(2030, 12, 31)


def test_block_cannot_be_entered_twice():
    """Re-entering a block that is still open is refused."""
    block = expected_failure("gap")

    with (
        pytest.raises(RuntimeError, match="entered twice"),
        block,
        block,
    ):
        pass
