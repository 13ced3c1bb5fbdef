"""Mark one block of assertions inside a test as an expected failure.

Use it where a test holds assertions that must keep passing next to a few that are
known to fail for now::

    from tests.support.expected_failure import expected_failure

    def test_person_page(client, person):
        response = client.get(person.url)
        assert response.status_code == 200
        with expected_failure("audit trail not rendered yet"):
            assert b"audit" in response.content
        assert person.name.encode() in response.content

An ``AssertionError`` raised inside the block is recorded as an expected failure and
the test goes on; every assertion outside the block guards the build as usual. A
block that passes fails the build (``strict=True``, the default) or is reported as
an unexpected pass (``strict=False``). Each block is reported as its own entry: in
pytest's terminal summary and JUnit XML, and in a unittest result as an expected
failure or unexpected success.

This module is also the pytest plugin that does the reporting; the project's root
``conftest.py`` loads it. ``--run-expected-failures`` (or pytest's ``--runxfail``, or
the environment variable ``PGZEN_RUN_EXPECTED_FAILURES=1``, which unittest runs read)
runs every marked block as plain assertions. See ``docs/testing.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import sys
import threading
import time
import traceback
import unittest
import warnings
from collections import Counter
from collections.abc import Generator, Iterable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

import pytest

__all__ = [
    "RUN_ENV_VAR",
    "RUN_OPTION",
    "ExpectedFailure",
    "ExpectedFailurePassedWarning",
    "expected_failure",
]

RUN_OPTION = "--run-expected-failures"
RUN_ENV_VAR = "PGZEN_RUN_EXPECTED_FAILURES"

_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})

Outcome = Literal["xfailed", "xpassed", "failed"]


class ExpectedFailurePassedWarning(UserWarning):
    """A non-strict expected-failure block passed under plain unittest.

    unittest has no way to report an unexpected success that does not fail the run,
    so a ``strict=False`` block that passes there is reported with this warning.
    """


def expected_failure(
    reason: str,
    *,
    raises: type[Exception] | tuple[type[Exception], ...] = AssertionError,
    match: str | re.Pattern[str] | None = None,
    strict: bool = True,
    expires: str | dt.date | None = None,
) -> ExpectedFailure:
    """Return a context manager that expects the block it wraps to fail.

    :param reason: Why the block fails today; shown in every report.
    :param raises: The exception type (or tuple of types) that counts as the expected
        failure; anything else raised in the block is a real failure.
    :param match: A regular expression searched in ``str(exception)``; an exception
        that does not match is a real failure.
    :param strict: When true, a block that passes fails the build, pointing at the
        block and asking to remove the mark; when false it is reported as an
        unexpected pass.
    :param expires: A date (``"YYYY-MM-DD"`` or :class:`datetime.date`); from the day
        after it, a block that still fails fails the build.
    """
    return ExpectedFailure(
        reason, raises=raises, match=match, strict=strict, expires=expires
    )


class ExpectedFailure:
    """Context manager behind :func:`expected_failure`; see its parameters."""

    def __init__(
        self,
        reason: str,
        *,
        raises: type[Exception] | tuple[type[Exception], ...] = AssertionError,
        match: str | re.Pattern[str] | None = None,
        strict: bool = True,
        expires: str | dt.date | None = None,
    ) -> None:
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"expected_failure needs a reason, got {reason!r}")
        self.reason = reason
        self.raises = _check_raises(raises)
        self.match = re.compile(match) if isinstance(match, str) else match
        self.strict = strict
        self.expires = _parse_expires(expires)
        self._context: _Context | None = None
        self._active = False

    def __repr__(self) -> str:
        return f"expected_failure({self.reason!r}, strict={self.strict!r})"

    def __enter__(self) -> None:
        if self._active:
            raise RuntimeError("an expected_failure block cannot be entered twice")
        self._active = True

        # The frame running the `with` statement is the block's location.
        frame = sys._getframe(1)
        self._path = frame.f_code.co_filename
        self._lineno = frame.f_lineno
        self._context = _find_context(frame)
        self._start = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._active = False
        context, self._context = self._context, None
        if context is None or context.run_plainly:
            return False
        if exc is not None and not self._is_expected(exc):
            return False

        block = _Block(
            reason=self.reason,
            path=self._path,
            lineno=self._lineno,
            strict=self.strict,
            expires=self.expires,
            duration=time.perf_counter() - self._start,
        )
        if exc is None:
            context.passed(block)
        elif self.expires is not None and dt.date.today() > self.expires:
            context.expired(block, exc)
        else:
            context.failed(block, exc)
        return True

    def _is_expected(self, exc: BaseException) -> bool:
        # Base exceptions (KeyboardInterrupt, pytest.skip, pytest.fail) always pass
        # through: they are not the outcome of an assertion.
        if not isinstance(exc, Exception) or not isinstance(exc, self.raises):
            return False
        return self.match is None or self.match.search(str(exc)) is not None


def _check_raises(
    raises: type[Exception] | tuple[type[Exception], ...],
) -> tuple[type[Exception], ...]:
    types = raises if isinstance(raises, tuple) else (raises,)
    for type_ in types:
        if not (isinstance(type_, type) and issubclass(type_, Exception)):
            raise TypeError(f"raises must be Exception subclasses, got {type_!r}")
    return types


def _parse_expires(expires: str | dt.date | None) -> dt.date | None:
    if expires is None or isinstance(expires, dt.date):
        return expires
    try:
        return dt.date.fromisoformat(expires)
    except (TypeError, ValueError):
        raise ValueError(
            f"expires must be a date written YYYY-MM-DD, got {expires!r}"
        ) from None


def _run_plainly_from_env() -> bool:
    return os.environ.get(RUN_ENV_VAR, "").strip().lower() in _TRUE_WORDS


@dataclasses.dataclass(frozen=True)
class _Block:
    """One execution of a marked block, with what the reports need about it."""

    reason: str
    path: str
    lineno: int
    strict: bool
    expires: dt.date | None
    duration: float

    def where(self, root: Path | None = None) -> str:
        return f"{_display_path(self.path, root)}:{self.lineno}"


def _display_path(path: str, root: Path | None) -> str:
    root = root or Path.cwd()
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path


def _remove_mark_message(block: _Block, root: Path | None = None) -> str:
    return (
        f"expected_failure block at {block.where(root)} passed: "
        "remove the mark if the fix is in"
    )


def _expired_message(block: _Block, root: Path | None = None) -> str:
    return (
        f"expected_failure block at {block.where(root)} still fails after its "
        f"expiry date {block.expires}: fix it or set a new date"
    )


def _format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip()


class _Context:
    """Where the outcome of a block goes: a pytest item or a unittest result."""

    run_plainly: bool = False

    def passed(self, block: _Block) -> None:
        raise NotImplementedError

    def failed(self, block: _Block, exc: BaseException) -> None:
        raise NotImplementedError

    def expired(self, block: _Block, exc: BaseException) -> None:
        raise NotImplementedError


def _find_context(frame: FrameType) -> _Context | None:
    if _running_items:
        return _PytestContext(_running_items[-1])
    testcase = _running_testcase(frame)
    if testcase is not None and not _is_pytest_result(testcase):
        return _UnittestContext(testcase)
    # Outside any test, or under a pytest that did not load this plugin, the block
    # is plain code: better a failure shown than one hidden or misreported.
    return None


def _is_pytest_result(testcase: unittest.TestCase) -> bool:
    # pytest stands in as the unittest result, and turns an expected failure into
    # an xfail of the whole test: only the plugin's own reporting is right there.
    result = testcase._outcome.result  # type: ignore[attr-defined]
    return type(result).__module__.startswith("_pytest.")


# ---------------------------------------------------------------------------
# unittest


def _running_testcase(frame: FrameType | None) -> unittest.TestCase | None:
    """Return the TestCase whose test method (or helper) runs ``frame``, if any."""
    while frame is not None:
        candidate = frame.f_locals.get("self")
        # `_outcome` is set by TestCase.run() for the duration of the test only.
        if (
            isinstance(candidate, unittest.TestCase)
            and getattr(candidate, "_outcome", None) is not None
        ):
            return candidate
        frame = frame.f_back
    return None


# WARNING: `_SubTest` is private to unittest (stable since Python 3.4). Runners know
# it from `subTest()` and print it on its own line, apart from the test's outcome.
class _BlockCase(unittest.case._SubTest):  # type: ignore[name-defined,misc]
    """How a block shows in a unittest result: a subtest of the running test."""

    def __init__(self, test_case: unittest.TestCase, description: str) -> None:
        super().__init__(test_case, description, {})


class _UnittestContext(_Context):
    def __init__(self, testcase: unittest.TestCase) -> None:
        self.testcase = testcase
        self.run_plainly = _run_plainly_from_env()
        # WARNING: `_outcome` is private to unittest (stable since Python 3.4); it is
        # the only way to reach the result of the test that is running.
        self.result = testcase._outcome.result  # type: ignore[attr-defined]

    def _case(self, block: _Block, what: str) -> _BlockCase:
        return _BlockCase(self.testcase, f"expected_failure at {block.where()}: {what}")

    def passed(self, block: _Block) -> None:
        if block.strict:
            case = self._case(block, f"{block.reason}; passed, remove the mark")
            add = getattr(self.result, "addUnexpectedSuccess", None)
            if add is not None:
                add(case)
                return
            # A result without it is told about a failure instead, like unittest
            # itself does for expectedFailure.
            error = AssertionError(_remove_mark_message(block))
            self.result.addFailure(case, (type(error), error, None))
            return

        warnings.warn_explicit(
            f"{_remove_mark_message(block)} ({block.reason})",
            ExpectedFailurePassedWarning,
            block.path,
            block.lineno,
        )

    def failed(self, block: _Block, exc: BaseException) -> None:
        case = self._case(block, block.reason)
        add = getattr(self.result, "addExpectedFailure", None)
        if add is None:
            warnings.warn(
                "TestResult has no addExpectedFailure method, reporting as passes",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        add(case, (type(exc), exc, exc.__traceback__))

    def expired(self, block: _Block, exc: BaseException) -> None:
        case = self._case(block, f"{block.reason}; expired {block.expires}")
        error = AssertionError(_expired_message(block))
        error.__cause__ = exc
        # The cause carries the block's traceback; the wrapper needs none.
        self.result.addFailure(case, (type(error), error, None))


# ---------------------------------------------------------------------------
# pytest

# Items whose runtest protocol is in progress, innermost last. A list rather than a
# context variable so that blocks run in threads started by a test still find it.
# A block that ends after its test's last report (in a thread the test did not
# join) is reported at the end of the session instead (_orphans_key).
_running_items: list[pytest.Item] = []
# Held while a block files its record and while an item's protocol ends, so that a
# record is either on a report of its test or among the orphans, never lost between.
_records_lock = threading.Lock()

_records_key = pytest.StashKey[list[dict[str, Any]]]()
# On the config: records of blocks that ended after their test's protocol.
_orphans_key = pytest.StashKey[list[dict[str, Any]]]()
_seen_key = pytest.StashKey[Counter[tuple[str, int]]]()

# Name of the report attribute that carries block outcomes from the process that ran
# the test (perhaps an xdist worker) to the one that reports. It holds JSON-safe
# dicts so that pytest's report serialisation carries it unchanged.
REPORT_ATTRIBUTE = "expected_failure_blocks"
# Key of an xdist worker's output that carries its orphans to the controller.
WORKER_OUTPUT_KEY = "expected_failure_orphans"


class _PytestContext(_Context):
    def __init__(self, item: pytest.Item) -> None:
        self.item = item
        self.run_plainly = _run_plainly(item.config)

    def passed(self, block: _Block) -> None:
        if block.strict:
            summary = _remove_mark_message(block, self.item.config.rootpath)
            headline = f"[XPASS(strict)] {block.reason}"
            self._record(block, "failed", headline, summary, summary)
        else:
            self._record(block, "xpassed", block.reason, "", "")

    def failed(self, block: _Block, exc: BaseException) -> None:
        self._record(block, "xfailed", block.reason, "", _format_exception(exc))

    def expired(self, block: _Block, exc: BaseException) -> None:
        summary = _expired_message(block, self.item.config.rootpath)
        headline = f"[EXPIRED {block.expires}] {block.reason}"
        detail = f"{summary}\n\n{_format_exception(exc)}"
        self._record(block, "failed", headline, summary, detail)

    def _record(
        self,
        block: _Block,
        outcome: Outcome,
        headline: str,
        summary: str,
        detail: str,
    ) -> None:
        item = self.item
        seen = item.stash.setdefault(_seen_key, Counter())
        seen[block.path, block.lineno] += 1

        # A test's last report is made before its protocol ends; a block ending
        # later would sit in the item's stash unreported.
        with _records_lock:
            if item in _running_items:
                records = item.stash.setdefault(_records_key, [])
            else:
                records = item.config.stash.setdefault(_orphans_key, [])
            records.append(
                {
                    "nodeid": item.nodeid,
                    "outcome": outcome,
                    "reason": block.reason,
                    "headline": headline,
                    "summary": summary,
                    "detail": detail,
                    "where": block.where(item.config.rootpath),
                    "label": _label(item, block, seen[block.path, block.lineno]),
                    "lineno": block.lineno,
                    "same_file": _same_file(item, block.path),
                    "duration": block.duration,
                }
            )


def _run_plainly(config: pytest.Config) -> bool:
    # pytest's own --runxfail asks the same of xfail marks, so it applies here too.
    return (
        bool(config.getoption("run_expected_failures", False))
        or bool(config.getoption("runxfail", False))
        or _run_plainly_from_env()
    )


def _same_file(item: pytest.Item, path: str) -> bool:
    try:
        return Path(path).resolve() == item.path.resolve()
    except OSError:
        return False


def _label(item: pytest.Item, block: _Block, occurrence: int) -> str:
    """Name a block inside its test's node id: ``expected_failure:<line>``."""
    if _same_file(item, block.path):
        label = f"expected_failure:{block.lineno}"
    else:
        label = f"expected_failure:{Path(block.path).name}:{block.lineno}"
    if occurrence > 1:
        label += f"#{occurrence}"
    return label


def _with_label(nodeid: str, label: str) -> str:
    """Return a block's id: its test's id (or domain), the label as a parameter.

    The id differs from the test's so that JUnit XML gives the block its own
    ``<testcase>``; as a parameter it keeps the test's JUnit class name.
    """
    head, sep, last = nodeid.rpartition("::")
    if last.endswith("]") and "[" in last:
        return f"{head}{sep}{last[:-1]}-{label}]"
    return f"{nodeid}[{label}]"


def _block_report(
    report: pytest.TestReport, record: dict[str, Any]
) -> pytest.TestReport:
    nodeid = _with_label(report.nodeid, record["label"])
    path, test_lineno, domain = report.location
    lineno = record["lineno"] - 1 if record["same_file"] else test_lineno
    outcome = record["outcome"]
    extra: dict[str, Any] = {}

    if outcome == "xfailed":
        status: Literal["passed", "failed", "skipped"] = "skipped"
        longrepr = record["detail"] or None
        extra["wasxfail"] = record["reason"]
    elif outcome == "xpassed":
        status = "passed"
        longrepr = None
        extra["wasxfail"] = record["reason"]
    else:
        status = "failed"
        longrepr = f"{record['headline']}\n{record['detail']}"

    return pytest.TestReport(
        nodeid=nodeid,
        location=(path, lineno, _with_label(domain, record["label"])),
        keywords={},
        outcome=status,
        longrepr=longrepr,
        when="call",
        duration=record["duration"],
        **extra,
    )


def _test_failure_message(records: Iterable[dict[str, Any]]) -> str | None:
    """Say why a test whose own assertions passed fails: one line per failed block."""
    lines = [
        f"{r['summary']} ({r['reason']})" for r in records if r["outcome"] == "failed"
    ]
    return "\n".join(lines) or None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("expected failures")
    group.addoption(
        RUN_OPTION,
        action="store_true",
        dest="run_expected_failures",
        default=False,
        help=(
            "run every expected_failure block as plain assertions (also "
            f"{RUN_ENV_VAR}=1)"
        ),
    )


_PLUGIN_NAME = "pgzen-expected-failure"


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(_PLUGIN_NAME):
        config.pluginmanager.register(_Plugin(config), _PLUGIN_NAME)


class _Plugin:
    """Per-session hooks: track the running item, attach outcomes, report blocks."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        # xdist workers only attach outcomes to reports; the controller reports.
        self.reports_blocks = not hasattr(config, "workerinput")

    def pytest_report_header(self) -> str | None:
        if _run_plainly(self.config):
            return "expected_failure blocks: run as plain assertions"
        return None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item
    ) -> Generator[None, object, object]:
        with _records_lock:
            _running_items.append(item)
        try:
            return (yield)
        finally:
            with _records_lock:
                _running_items.remove(item)
                # Filed after the teardown report, before the protocol ended.
                late = item.stash.get(_records_key, [])
                item.stash[_records_key] = []
                self.config.stash.setdefault(_orphans_key, []).extend(late)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        records = item.stash.get(_records_key, [])
        if not records:
            return report
        item.stash[_records_key] = []
        setattr(report, REPORT_ATTRIBUTE, records)

        # A block failure also fails its test, so that --lf, --sw and IDE runners,
        # which only know the test's id, see it.
        message = _test_failure_message(records)
        if message and report.passed and not hasattr(report, "wasxfail"):
            report.outcome = "failed"
            report.longrepr = message
        return report

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        orphans = self.config.stash.get(_orphans_key, [])
        if not orphans or not self.reports_blocks:
            return
        terminalreporter.section("expected_failure blocks that outlived their test")
        for record in orphans:
            terminalreporter.line(
                f"{record['outcome'].upper()} {record['nodeid']}"
                f"[{record['label']}] at {record['where']}: {record['headline']}"
                " (it ended after its test; join the thread before the test ends)"
            )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        orphans = self.config.stash.get(_orphans_key, [])
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            # An xdist worker: no report follows its items' last, so the orphans
            # travel to the controller with the worker's output at its end.
            workeroutput[WORKER_OUTPUT_KEY] = list(orphans)
            return
        failed = any(record["outcome"] == "failed" for record in orphans)
        if failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """The xdist controller: take the orphans of a worker that finished."""
        workeroutput = getattr(node, "workeroutput", None) or {}
        records = workeroutput.get(WORKER_OUTPUT_KEY, [])
        self.config.stash.setdefault(_orphans_key, []).extend(records)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        records = getattr(report, REPORT_ATTRIBUTE, None)
        if not records or not self.reports_blocks:
            return

        # Blocks go first, so that the test's own report has the last word in
        # plugins that track a test's state by id (cacheprovider's --lf).
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        for record in records:
            block_report = _block_report(report, record)
            self.config.hook.pytest_runtest_logreport(report=block_report)
            # WARNING: private attribute. The terminal counts every reported id
            # towards the progress percentage; a block is not a collected item.
            progress = getattr(terminal, "_progress_nodeids_reported", None)
            if isinstance(progress, set):
                progress.discard(block_report.id)
