"""Real-browser tests: JupyterLab + ipywidgets in headless Chromium.

Each test starts a real ``jupyter lab`` (localhost, random port and token)
on a temporary folder holding a copy of one notebook, opens it in Debian's
``chromium`` through Playwright, runs all cells from JupyterLab's *Run*
menu, clicks the widget's **Step** button and checks that the rendered
counter text and chart picture changed.  Screenshots go to
``test-artifacts/`` (gitignored), with the page and the server log of every
test in ``test-artifacts/<test name>/`` for post-mortems.

Marked ``browser``: deselect locally with ``-m 'not browser'``.  Without
Chromium the tests skip, except under ``CI=true``, where they fail.
Set ``ETT_UPDATE_SCREENSHOT=1`` to also refresh ``docs/img/stepper.png``
(the README's picture) from :func:`test_explore_events_stepper`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from browser_support import (
    JupyterLab,
    click_and_wait,
    find_chromium,
    image_bytes,
    image_src,
    launch_chromium,
    prepare_notebook,
    run_notebook_in_lab,
    screenshot_output,
    wait_for_image_change,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
FIXTURE_NOTEBOOK = REPO / "tests" / "notebooks" / "browser_fixture.ipynb"
EXPLORE_NOTEBOOK = REPO / "notebooks" / "01_explore_events.ipynb"
README_SCREENSHOT = REPO / "docs" / "img" / "stepper.png"

#: CSS selectors both notebooks expose (ipywidgets ``add_class``).
STEP_BUTTON_TEXT = "Step"
COUNTER = ".ett-event-counter"
CHART = ".ett-chart"


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


@pytest.fixture(scope="module")
def chromium_path() -> str:
    """Debian's Chromium; skip without it locally, fail without it on CI."""
    path = find_chromium()
    if path is None:
        reason = (
            "chromium not found (install Debian's package: apt-get install chromium; "
            "or set ETT_CHROMIUM=/path/to/chromium); Playwright's browser downloads are not used"
        )
        if _on_ci():
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory, chromium_path):
    """One JupyterLab for the module, serving a fresh folder; stopped (kernels too) at the end.

    Its kernels see ``ETT_DB`` = ``<root>/ett.duckdb`` (written by the tests that need it).
    """
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"
    root.mkdir()
    server = JupyterLab(root_dir=root, work_dir=base / "lab", env={"ETT_DB": str(root / "ett.duckdb")})
    server.start(timeout=90)
    try:
        yield server
    finally:
        leftover = server.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(server.log_path, ARTIFACTS / "jupyterlab.log")
    if leftover:
        pytest.fail(f"processes left running after stopping JupyterLab: {leftover}")


@pytest.fixture(scope="module")
def browser(chromium_path):
    """Headless Chromium for the module (Playwright, fresh temporary profile)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright, chromium_path)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(request, browser, lab):
    """A fresh browser context and page; afterwards a screenshot of it, and the kernels shut down."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        try:
            keep = ARTIFACTS / request.node.name
            keep.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(keep / "page.png"))
        except Exception:  # noqa: BLE001 -- evidence only; never mask the test's own error
            pass
        context.close()
        lab.shutdown_kernels()


def serve(lab: JupyterLab, notebook: Path, parameters: dict | None = None) -> str:
    """Copy ``notebook`` (``parameters`` injected as papermill would) into the server's folder; its name."""
    return prepare_notebook(notebook, lab.root_dir, parameters).name


def step_and_check(page, artifact: Path) -> tuple[str, str]:
    """Click Step once; assert that the counter text and the chart picture changed; screenshot."""
    src_before = image_src(page, CHART)
    assert src_before, f"no chart image at {CHART!r}"
    picture_before = image_bytes(page, CHART)
    assert picture_before.startswith(b"\x89PNG"), "the chart is not a PNG"

    before, after = click_and_wait(page, STEP_BUTTON_TEXT, COUNTER)
    assert after != before

    wait_for_image_change(page, CHART, src_before)
    picture_after = image_bytes(page, CHART)
    assert picture_after.startswith(b"\x89PNG")
    assert picture_after != picture_before, "the chart's image URL changed but not the picture"
    screenshot_output(page, COUNTER, artifact)
    assert artifact.stat().st_size > 1000
    return before, after


def test_fixture_notebook_steps_in_jupyterlab(lab, page):
    """Smoke test of the harness on a tiny notebook: Step -> 'events: 0' becomes 'events: 1'."""
    name = serve(lab, FIXTURE_NOTEBOOK)
    run_notebook_in_lab(page, lab, name, widget_selector=COUNTER)
    assert len(lab.processes()) >= 2, "expected the server and the notebook's kernel to be running"

    before, after = step_and_check(page, ARTIFACTS / "browser_fixture.png")
    assert (before, after) == ("events: 0", "events: 1")
    # A second click proves the kernel keeps answering (not a one-off render).
    assert click_and_wait(page, STEP_BUTTON_TEXT, COUNTER) == ("events: 1", "events: 2")


def test_cell_error_fails_with_the_traceback(lab, page, tmp_path):
    """The harness reports a failing cell with its exception instead of waiting for a widget."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[
        new_code_cell("x = 1"),
        new_code_cell(""),  # never executed by JupyterLab: must not count as a failure
        new_code_cell("raise ValueError('deliberate failure in the browser test')"),
        new_code_cell("import ipywidgets as w\nw.HTML('never shown')"),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "src" / "failing.ipynb"
    source.parent.mkdir()
    nbformat.write(notebook, str(source))
    name = serve(lab, source)
    with pytest.raises(AssertionError, match="deliberate failure in the browser test") as failure:
        run_notebook_in_lab(page, lab, name, widget_selector=COUNTER)
    assert "failing.ipynb" in str(failure.value)


def make_demo_database(path: Path, days: float = 1.0) -> Path:
    """A small DuckDB file with demo 1m candles (ETH/USDT) for the explore notebook."""
    from ettlib.store.demo import write_demo_data
    from ettlib.store import DuckDBStorage

    with DuckDBStorage(path) as storage:
        write_demo_data(storage, days=days)
    return path


def test_explore_events_stepper(lab, page):
    """``notebooks/01_explore_events.ipynb`` runs in JupyterLab and its stepper steps.

    What the notebook must expose (all through ``ettlib.notebooks.widgets.EventStepper``):

    * a cell tagged ``parameters`` defining ``db_path`` (a DuckDB file with
      1m candles); the test injects ``db_path`` there as papermill would, and
      also sets the environment variable ``ETT_DB`` to the same path;
    * a widget button whose label is exactly ``Step`` (``button.jupyter-button``);
    * the event counter, an ``ipywidgets.HTML`` with CSS class
      ``ett-event-counter`` whose text changes on every step;
    * the chart, an ``ipywidgets.Image`` (PNG) with CSS class ``ett-chart``,
      redrawn on every step;
    * no cell error when run top to bottom within 60 s on the demo data.
    """
    db = make_demo_database(Path(lab.root_dir) / "ett.duckdb")
    # Step ahead first (demo_steps) so the picture shows frames, targets and pivots.
    name = serve(lab, EXPLORE_NOTEBOOK, parameters={"db_path": str(db), "demo_steps": 400})
    run_notebook_in_lab(page, lab, name, widget_selector=COUNTER, timeout_ms=90_000)

    shot = ARTIFACTS / "stepper.png"
    step_and_check(page, shot)
    if os.environ.get("ETT_UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_SCREENSHOT)
