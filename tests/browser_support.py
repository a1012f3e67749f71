"""Drive JupyterLab in headless Chromium: the harness of ``tests/test_browser.py``.

Three pieces, each usable alone:

* :class:`JupyterLab` -- a real ``jupyter lab`` server on ``127.0.0.1``, a
  free port and a random token, serving a folder; its own process group,
  private config/runtime/settings/workspace folders and a log file.
  ``stop()`` ends the server's process group and every kernel it started
  (kernels run in sessions of their own) and returns what survived.
* :func:`launch_chromium` -- Debian's ``chromium`` through Playwright
  (``executable_path``; browser downloads do not work here), headless, with
  a fresh profile.
* :func:`run_notebook_in_lab` and :func:`click_and_wait` -- open a notebook,
  wait for its kernel, run all cells through JupyterLab's own *Run* menu,
  wait for the ipywidgets to render, click a button and wait for a text to
  change; :func:`image_src`, :func:`image_bytes` and
  :func:`wait_for_image_change` read an ``ipywidgets.Image`` back;
  :func:`screenshot_output` shoots the cell output holding a widget;
  :func:`prepare_notebook` copies a notebook with papermill parameters.

Selectors rely on ipywidgets' ``add_class``: a widget with
``w.add_class('ett-event-counter')`` renders as an element with that CSS
class, so tests address ``.ett-event-counter`` rather than JupyterLab's
internal markup.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

#: Where Debian's package puts the browser (``apt-get install chromium``).
CHROMIUM_CANDIDATES: tuple[str, ...] = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

#: Flags for a quiet, self-contained headless browser in a container.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

#: How an exception shown by IPython starts a line (tracebacks go to stderr's mime type).
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception|Interrupt)\b", re.MULTILINE)

#: Text ipywidgets shows while no widget manager has rendered the view.
LOADING_WIDGET_TEXT = "Loading widget..."


def find_chromium() -> str | None:
    """Path of the system's Chromium, or None when it is not installed.

    ``$ETT_CHROMIUM`` overrides the search (a path to the executable).
    """
    override = os.environ.get("ETT_CHROMIUM")
    if override:
        return override if Path(override).is_file() else None
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabStartError(RuntimeError):
    """JupyterLab did not answer in time (the message carries its log)."""


@dataclass
class JupyterLab:
    """A JupyterLab server serving ``root_dir``; start with :meth:`start`.

    Parameters
    ----------
    root_dir
        Folder the server serves (notebooks are opened relative to it).
    work_dir
        Private folder for the log, runtime files, user settings and
        workspaces (nothing is written to the user's ``~/.jupyter``).
    env
        Extra environment variables for the server and its kernels.
    """

    root_dir: Path
    work_dir: Path
    env: dict[str, str] | None = None
    port: int = 0
    token: str = ""
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return Path(self.work_dir) / "jupyterlab.log"

    def notebook_url(self, name: str, workspace: str | None = None) -> str:
        """URL that opens notebook ``name`` (relative to ``root_dir``) in Lab.

        With ``workspace``, Lab opens in that (new, empty) workspace, so the
        tabs of earlier pages are not restored next to the notebook.
        """
        prefix = f"/lab/workspaces/{urllib.parse.quote(workspace)}" if workspace else "/lab"
        return f"{self.base_url}{prefix}/tree/{urllib.parse.quote(name)}?token={self.token}"

    def api(self, method: str, path: str) -> object:
        """Call the server's REST API (``path`` like ``/api/sessions``); the decoded JSON or None."""
        request = urllib.request.Request(
            f"{self.base_url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Shut down every kernel the server runs (between tests sharing one server)."""
        for kernel in self.api("GET", "/api/kernels"):
            self.api("DELETE", f"/api/kernels/{kernel['id']}")

    def log(self) -> str:
        """The server's output so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 60.0) -> "JupyterLab":
        """Start the server and wait until ``/api/status`` answers.

        A port chosen here (``port=0``) can be taken by another process before
        the server binds it; the server then exits saying so, and is started
        again on another port (three starts in all).

        Raises
        ------
        LabStartError
            When the process exits or does not answer within ``timeout``
            seconds; the message ends with the server's log.
        """
        chosen = not self.port
        for attempt in range(1, 4):
            try:
                return self._start(timeout)
            except LabStartError as err:
                if not (chosen and attempt < 3 and f"The port {self.port} is already in use" in str(err)):
                    raise
                self.port = 0

    def _start(self, timeout: float) -> "JupyterLab":
        work = Path(self.work_dir)
        settings = work / "user-settings"
        for sub in ("runtime", "config", "workspaces", settings / "@jupyterlab" / "apputils-extension"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        # No news/update pop-ups: they would cover parts of the page.
        (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        self.port = self.port or free_port()
        self.token = self.token or secrets.token_hex(16)
        env = dict(os.environ)
        env.update(
            JUPYTER_RUNTIME_DIR=str(work / "runtime"),
            JUPYTER_CONFIG_DIR=str(work / "config"),  # no ~/.jupyter settings (passwords, ...)
            JUPYTER_PLATFORM_DIRS="1",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env or {})
        command = [
            sys.executable, "-m", "jupyter", "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={Path(self.root_dir).resolve()}",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={work / 'workspaces'}",
            "--LabApp.news_url=",
            "--LabServerApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--ServerApp.terminals_enabled=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # containers and CI runners often run as root
        log = open(self.log_path, "wb")  # noqa: SIM115 -- the child keeps writing to it
        try:
            self.process = subprocess.Popen(
                command, cwd=str(self.root_dir), env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LabStartError(
                    f"jupyter lab exited with code {self.process.returncode} before answering.\n"
                    f"--- server log ---\n{self.log()}"
                )
            try:
                with urllib.request.urlopen(
                    f"{self.base_url}/api/status?token={self.token}", timeout=2
                ) as reply:
                    if reply.status == 200:
                        json.loads(reply.read())
                        return self
            except (urllib.error.URLError, ConnectionError, OSError, ValueError) as exc:
                last_error = exc
            time.sleep(0.25)
        self.stop()
        raise LabStartError(
            f"jupyter lab did not answer {self.base_url}/api/status within {timeout:.0f} s "
            f"(last error: {last_error!r}).\n--- server log ---\n{self.log()}"
        )

    def processes(self) -> list:
        """The server and every process it started (``psutil.Process``), while they run."""
        if self.process is None:
            return []
        try:
            server = psutil.Process(self.process.pid)
            return [server, *server.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, grace: float = 10.0) -> list:
        """Stop the server, its process group and every kernel it started.

        SIGTERM first (the server then shuts its kernels down cleanly), then
        SIGKILL for whatever is left: the server's process group and each
        descendant seen before stopping (kernels run in sessions of their
        own, outside the server's group).

        Returns
        -------
        list
            The processes still alive afterwards (empty when all is well).
        """
        proc = self.process
        if proc is None:
            return []
        family = self.processes()
        self.process = None
        try:
            pgid = os.getpgid(proc.pid)
        except ProcessLookupError:
            pgid = None
        if pgid is not None:
            _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        if pgid is not None:
            _signal_group(pgid, signal.SIGKILL)
        for member in family:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout=grace)
        _, alive = psutil.wait_procs(family, timeout=grace)
        return alive

    def __enter__(self) -> "JupyterLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def launch_chromium(playwright, executable_path: str):
    """Launch headless Chromium; returns a Playwright ``Browser``.

    Every launch gets a fresh profile: Playwright creates a temporary
    user-data-dir and deletes it on ``close()`` (it refuses a
    ``--user-data-dir`` flag in ``launch``; only persistent contexts take one).
    """
    return playwright.chromium.launch(executable_path=executable_path, args=list(CHROMIUM_ARGS), headless=True)


# ----------------------------------------------------------------- page


def wait_for_kernel_idle(page, timeout_ms: float = 60_000) -> None:
    """Wait until the open notebook's kernel is connected and idle.

    Reads the status bar's kernel item ("Python 3 (ipykernel) | Idle"),
    which reads "No Kernel | Initializing" until a kernel is attached, and
    the notebook toolbar's execution indicator (``data-status='idle'``).
    The indicator alone is not enough: it reads ``idle`` for a moment
    before the kernel exists, and commands sent then are lost.
    """
    page.wait_for_function(
        """() => {
            const item = document.querySelector('.jp-StatusBar-TextItem[title^="Change kernel"]');
            const indicator = document.querySelector(
                '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
            if (item === null || indicator === null) return false;
            const text = item.textContent.trim();
            return !text.startsWith('No Kernel') && /\\|\\s*Idle$/.test(text)
                && indicator.getAttribute('data-status') === 'idle';
        }""",
        timeout=timeout_ms,
    )


def run_all_cells(page) -> None:
    """Run every cell through JupyterLab's menu: *Run* > *Run All Cells*."""
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    item = page.get_by_role("menuitem", name="Run All Cells", exact=True)
    item.wait_for(state="visible", timeout=10_000)
    item.click()


#: JS: the prompts ("[3]:", "[*]:", "[ ]:") of the visible notebook's non-empty code cells
#: (JupyterLab does not execute an empty cell, so its prompt stays "[ ]").
_CODE_CELL_PROMPTS = """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')]
    .filter(cell => { const code = cell.querySelector('.cm-content');
                      return code === null || code.textContent.trim() !== ''; })
    .map(cell => { const p = cell.querySelector('.jp-InputArea-prompt');
                   return p === null ? '' : p.textContent.trim(); })"""


def run_notebook_in_lab(
    page,
    lab: JupyterLab,
    notebook_name: str,
    *,
    widget_selector: str = ".jupyter-widgets",
    timeout_ms: float = 60_000,
    workspace: str | None = None,
) -> None:
    """Open ``notebook_name`` in JupyterLab, run all cells, wait for widgets.

    Waits for the kernel to be idle before running, for every cell to
    finish (no ``[*]`` prompt left, kernel idle again), and for
    ``widget_selector`` to be visible.  The page opens in a fresh Lab
    workspace (``workspace``, default a new random name), so notebooks
    opened by earlier pages are not restored (nor their kernels started).

    Raises
    ------
    AssertionError
        When a cell shows an error, or the widget output is stuck at
        "Loading widget..." (ipywidgets' JupyterLab extension missing).
    """
    if workspace is None:
        workspace = "ws-" + re.sub(r"[^A-Za-z0-9]+", "-", notebook_name) + "-" + secrets.token_hex(3)
    page.goto(lab.notebook_url(notebook_name, workspace), wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=timeout_ms)
    wait_for_kernel_idle(page, timeout_ms)
    run_all_cells(page)
    # Run All marks every code cell "[*]" at once; each gets its execution
    # count when it ran.  After an error JupyterLab drops the rest of the
    # queue ("[ ]" again), so the run is over when no "[*]" is left.
    try:
        page.wait_for_function(
            f"""() => {{
                const prompts = ({_CODE_CELL_PROMPTS})();
                return prompts.some(p => /\\[\\d+\\]/.test(p))
                    && !prompts.some(p => p.includes('*'));
            }}""",
            timeout=timeout_ms,
        )
    except Exception as exc:
        prompts = page.evaluate(_CODE_CELL_PROMPTS)
        raise AssertionError(
            f"cells of {notebook_name} did not finish within {timeout_ms / 1000:.0f} s; prompts: {prompts!r}"
        ) from exc
    wait_for_kernel_idle(page, timeout_ms)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    stderr = errors.all_inner_texts()
    prompts = page.evaluate(_CODE_CELL_PROMPTS)
    tracebacks = [text for text in stderr if _TRACEBACK.search(text)]
    if tracebacks or not all(re.search(r"\[\d+\]", p) for p in prompts):
        raise AssertionError(
            f"a cell failed in {notebook_name} (prompts {prompts!r}):\n" + "\n".join(tracebacks or stderr)
        )
    try:
        page.locator(widget_selector).first.wait_for(state="visible", timeout=timeout_ms)
    except Exception as exc:
        outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
        raise AssertionError(
            f"no widget {widget_selector!r} rendered in {notebook_name}; outputs: {outputs!r}; stderr: {stderr!r}"
        ) from exc
    loading = page.get_by_text(LOADING_WIDGET_TEXT)
    if loading.count():
        raise AssertionError(f"widgets did not render in {notebook_name}: page still shows {LOADING_WIDGET_TEXT!r}")


def click_and_wait(page, button_text: str, counter_selector: str, timeout_ms: float = 30_000) -> tuple[str, str]:
    """Click the widget button labelled exactly ``button_text``; wait for the counter to change.

    Returns
    -------
    (before, after)
        The counter's text before the click and once it changed.

    Raises
    ------
    AssertionError
        When the counter's text has not changed within ``timeout_ms``.
    """
    counter = page.locator(counter_selector).first
    counter.wait_for(state="visible", timeout=timeout_ms)
    before = counter.inner_text()
    button = page.locator("button.jupyter-button").filter(has_text=button_text)
    exact = [b for b in button.all() if b.inner_text().strip() == button_text]
    if not exact:
        labels = page.locator("button.jupyter-button").all_inner_texts()
        raise AssertionError(f"no widget button labelled {button_text!r}; buttons: {labels!r}")
    exact[0].click()
    try:
        page.wait_for_function(
            "([sel, before]) => { const el = document.querySelector(sel);"
            " return el !== null && el.innerText !== before; }",
            arg=[counter_selector, before],
            timeout=timeout_ms,
        )
    except Exception as exc:
        raise AssertionError(
            f"{counter_selector!r} still reads {before!r} {timeout_ms / 1000:.0f} s after clicking {button_text!r}"
        ) from exc
    return before, counter.inner_text()


def image_src(page, selector: str) -> str:
    """The ``src`` of the image at ``selector`` (an ``<img>`` or an element around one)."""
    return page.evaluate(
        "(sel) => { const el = document.querySelector(sel);"
        " if (el === null) return null;"
        " const img = el.tagName === 'IMG' ? el : el.querySelector('img');"
        " return img === null ? null : img.src; }",
        selector,
    )


def image_bytes(page, selector: str) -> bytes:
    """The bytes the image at ``selector`` shows (read back from its blob/data URL).

    ipywidgets 8 puts an ``Image`` widget's value in a ``blob:`` URL, which
    changes at every update even for equal bytes; comparing the bytes shows
    that the picture itself changed.
    """
    src = image_src(page, selector)
    if not src:
        raise AssertionError(f"no image at {selector!r}")
    encoded = page.evaluate(
        """async (src) => {
            const buffer = await (await fetch(src)).arrayBuffer();
            let text = '';
            for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
            return btoa(text);
        }""",
        src,
    )
    return base64.b64decode(encoded)


def wait_for_image_change(page, selector: str, old_src: str, timeout_ms: float = 30_000) -> str:
    """Wait until the ``src`` of the image at ``selector`` differs from ``old_src``; return it."""
    try:
        page.wait_for_function(
            "([sel, old]) => { const el = document.querySelector(sel);"
            " const img = el && (el.tagName === 'IMG' ? el : el.querySelector('img'));"
            " return img !== null && !!img.src && img.src !== old; }",
            arg=[selector, old_src],
            timeout=timeout_ms,
        )
    except Exception as exc:
        raise AssertionError(f"image {selector!r} did not change within {timeout_ms / 1000:.0f} s") from exc
    return image_src(page, selector)


def screenshot_output(page, inner_selector: str, path: Path) -> Path:
    """Screenshot of the cell output that contains ``inner_selector`` (the whole widget)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    output = page.locator(".jp-OutputArea-output").filter(has=page.locator(inner_selector)).last
    output.scroll_into_view_if_needed()
    output.screenshot(path=str(path), animations="disabled")
    return path


def prepare_notebook(source: Path, folder: Path, parameters: dict | None = None) -> Path:
    """Copy notebook ``source`` into ``folder``, with ``parameters`` injected as papermill would.

    The parameters land in a cell tagged ``injected-parameters`` after the
    cell tagged ``parameters`` (nothing is executed here; the browser runs it).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(source).name
    if not parameters:
        shutil.copyfile(source, target)
        return target
    import nbformat
    from papermill.iorw import load_notebook_node  # adds the metadata papermill expects
    from papermill.parameterize import parameterize_notebook

    notebook = parameterize_notebook(load_notebook_node(str(source)), parameters)
    nbformat.write(notebook, str(target))
    return target
