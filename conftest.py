"""Root of the test configuration: the project's pytest plugins, loaded everywhere."""

pytest_plugins = [
    "tests.support.postgres",
    "tests.support.expected_failure",
    "tests.support.mqtt",
]
