"""The fast lane's rule (tests/conftest.py): which tests `pytest -m "not slow"` leaves out."""

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def suite(pytester):
    """A small suite under the project's own marking hook, loaded as a plugin (`-p lane`)."""
    pytester.syspathinsert()
    pytester.makepyfile(lane=(
        "import pytest\n"
        "from conftest import pytest_collection_modifyitems, slow_fixture  # tests/conftest.py's\n"
        "@pytest.fixture\n"
        "@slow_fixture\n"
        "def trained():\n"
        "    return 1\n"
        "@pytest.fixture\n"
        "def through_trained(trained):\n"
        "    return trained\n"
    ))
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n    packaging: wheel\n")
    pytester.makepyfile(test_suite=(
        "import pytest\n"
        "def test_plain(): pass\n"
        "def test_direct(trained): pass\n"
        "def test_indirect(through_trained): pass\n"
        "@pytest.mark.packaging\n"
        "def test_wheel(): pass\n"
        "@pytest.mark.slow\n"
        "def test_marked(): pass\n"
    ))
    return pytester


def test_the_fast_lane_keeps_only_tests_without_slow_fixtures_or_marks(suite):
    result = suite.runpytest_inprocess("-p", "lane", "-m", "not slow", "-q", "--collect-only")
    collected = [line.split("::")[1] for line in result.outlines if "::" in line]
    assert collected == ["test_plain"]


def test_the_default_run_keeps_everything(suite):
    suite.runpytest_inprocess("-p", "lane", "-q").assert_outcomes(passed=5)
