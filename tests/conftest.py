"""Suite-wide settings: the order of the layers, slowest and most stateful last."""

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests after everything else.

    They are the slowest, and Playwright's sync API keeps its event loop installed on the main thread
    while its session-scoped browser lives, which would make later tests that call ``asyncio.run`` fail.
    """
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
