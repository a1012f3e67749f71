"""Running a report: papermill executes the notebook, nbconvert exports it to one HTML file.

A report is one notebook executed for one set of parameters.  The executed
notebook is kept beside an HTML export made by nbconvert, with the code cells
hidden by default (``show_code=True`` shows them) and every figure embedded
as a base64 PNG (IPython kernels start with ``--matplotlib=inline``), so the
HTML file is the whole report: it can be mailed or committed on its own.

**Names.**  A notebook may name its report: an output of mime type
``application/vnd.ettlib.report+json`` (``{"run_id", "symbols", "title"}``,
as :func:`ettlib.notebooks.report_tables.report_metadata` makes it) gives the
HTML page its title, and the files are then ``<notebook>-<run_id>.html``
and ``.ipynb`` -- so a new run never overwrites an earlier report.  Without
it they are ``<notebook>.html``; ``name`` or ``output`` choose the name.

**Progress.**  With ``progress=True`` papermill's bar (cells done out of the
total) goes to stderr while the notebook runs.

The kernel's channels are encrypted (CurveZMQ) where the kernel supports it
(see :func:`_encrypted_kernel`).

**A kernel that dies while starting is started again**, up to
:data:`KERNEL_START_ATTEMPTS` starts in all.  jupyter_client chooses a
kernel's TCP ports by binding and releasing them, and another process (a
second kernel, a Dask worker's connections) can take one before the kernel
binds it: the kernel then exits with ``Address already in use`` before it
answers its first request, and no cell has run.  Nothing else is retried: a
cell that raises, a kernel that dies later, or one that does not answer in
``start_timeout`` is an error at once.

A run that fails still writes its executed notebook (papermill puts an error
banner at its top) and an HTML export showing the error, then raises
:class:`ReportError` naming the cell and the error.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ettlib.errors import ConfigError, EttError
from ettlib.reports.parameters import existing_notebook, validate_parameters

__all__ = ["ReportError", "ReportResult", "REPORT_MIME", "run_report", "export_html", "report_metadata"]

#: Mime type of the output that names a report (run id, symbols, title).
REPORT_MIME = "application/vnd.ettlib.report+json"

#: Cells papermill adds to an executed notebook (not the author's).
SKIPPED_TAGS = frozenset({"injected-parameters", "papermill-error-cell-tag"})
KERNEL_START_ATTEMPTS = 3  # starts of a report's kernel, when it dies before answering (see the module doc)
_DIED_STARTING = "Kernel died before replying to kernel_info"  # jupyter_client's RuntimeError


class ReportError(EttError):
    """A report notebook failed while it ran.

    The executed notebook and its HTML export were written before this was
    raised; their paths are attributes, with the failing cell and error.
    """

    def __init__(
        self,
        message: str,
        *,
        notebook: str | None = None,
        cell_index: int | None = None,
        exec_count: int | None = None,
        ename: str | None = None,
        evalue: str | None = None,
        executed_notebook_path: Path | None = None,
        html_path: Path | None = None,
    ):
        self.notebook = notebook
        self.cell_index = cell_index
        self.exec_count = exec_count
        self.ename = ename
        self.evalue = evalue
        self.executed_notebook_path = executed_notebook_path
        self.html_path = html_path
        super().__init__(message)

    def __reduce__(self):  # picklable across processes, keyword attributes kept
        return (_rebuild_report_error, (self.args[0], dict(self.__dict__)))


def _rebuild_report_error(message: str, attributes: dict) -> ReportError:
    return ReportError(message, **attributes)


@dataclass(frozen=True, slots=True)
class ReportResult:
    """Where one report's files are and how its run went (``run_id``: the notebook's, if it named one)."""

    notebook: Path
    parameters: dict[str, Any]
    executed_notebook_path: Path | None
    html_path: Path
    wall_s: float
    ok: bool = True
    error: str | None = None
    run_id: str | None = None
    title: str | None = None


def report_metadata(executed_notebook: str | Path) -> dict[str, Any]:
    """The last :data:`REPORT_MIME` output of an executed notebook (``{}`` when there is none)."""
    import nbformat

    found: dict[str, Any] = {}
    nb = nbformat.read(str(executed_notebook), as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", ()):
            data = output.get("data", {})
            if REPORT_MIME in data and isinstance(data[REPORT_MIME], dict):
                found = dict(data[REPORT_MIME])
    return found


def export_html(executed_notebook: str | Path, html_path: str | Path, *, show_code: bool = False,
                title: str | None = None) -> Path:
    """Export an executed notebook to one self-contained HTML file.

    Code cells' inputs are hidden unless ``show_code``; outputs (figures as
    base64 PNG, tables, text, errors) are always shown, and markdown images
    are embedded too.  ``title`` is the page's title (default: the file's stem).
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(executed_notebook), as_version=4)
    exporter = HTMLExporter(
        exclude_input=not show_code,
        exclude_input_prompt=not show_code,
        exclude_output_prompt=True,
        embed_images=True,
    )
    resources = {"metadata": {"name": title or Path(html_path).stem, "path": str(Path(executed_notebook).parent)}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    html_path = Path(html_path)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(body, encoding="utf-8")
    return html_path


def _plain_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"report name {name!r} must be a plain file name")
    return name


def run_report(
    notebook: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    output_dir: str | Path = "reports",
    name: str | None = None,
    output: str | Path | None = None,
    show_code: bool = False,
    kernel_name: str | None = None,
    cwd: str | Path | None = None,
    validate: Callable[[Path, Mapping[str, Any]], Any] | None = validate_parameters,
    keep_executed_notebook: bool = True,
    start_timeout: int = 60,
    inline_figures: bool = True,
    progress: bool = False,
) -> ReportResult:
    """Execute ``notebook`` with ``parameters`` and export an HTML report.

    Writes the executed notebook and its HTML export into ``output_dir``,
    named ``name`` (``name.ipynb``, ``name.html``), else as the module doc
    says (``<notebook>-<run_id>``, or ``<notebook>``); ``output`` (an
    ``.html`` path) gives the folder and the name at once.
    ``validate(notebook, parameters)`` runs first, before any kernel starts
    (pass ``None`` when the caller has validated already).  ``cwd`` is the
    kernel's working directory (default: this process's).

    ``inline_figures`` starts an IPython kernel with ``--matplotlib=inline``,
    so every matplotlib ``Figure`` a cell displays becomes a PNG output --
    also one built outside pyplot, which a bare kernel shows as text only.
    ``progress`` shows papermill's progress bar (cells done) on stderr.

    Raises :class:`ReportError` (after writing both files) when a cell
    raises or the kernel dies, naming the cell and the error.
    """
    path = existing_notebook(notebook)
    parameters = dict(parameters or {})
    if validate is not None:
        validate(path, parameters)
    if output is not None:
        output = Path(output)
        if output.suffix != ".html":
            raise ConfigError(f"{output}: the report's output is an .html file")
        output_dir, name = output.parent, output.stem
    if name is not None:
        _plain_name(name)
    output_dir = Path(output_dir)
    running = output_dir / (f"{name}.ipynb" if name else f".{path.stem}-{os.getpid()}-{uuid.uuid4().hex[:8]}.ipynb")
    if path.resolve() in (running.resolve(), (output_dir / f"{name or path.stem}.ipynb").resolve()):
        raise ConfigError(f"{running}: the executed notebook would overwrite its source; "
                          "choose another output_dir or name")
    output_dir.mkdir(parents=True, exist_ok=True)
    if name:
        for stale in (running, running.with_suffix(".html")):
            stale.unlink(missing_ok=True)

    import papermill

    started = time.perf_counter()
    failure: Exception | None = None
    for _ in range(KERNEL_START_ATTEMPTS):
        try:
            papermill.execute_notebook(
                str(path), str(running), parameters=parameters, kernel_name=kernel_name,
                progress_bar=progress, log_output=False, cwd=str(cwd) if cwd is not None else None,
                start_timeout=start_timeout,
                **({"extra_arguments": ["--matplotlib=inline"]} if inline_figures and _is_ipython(path, kernel_name) else {}),
                **_encrypted_kernel(),
            )
            failure = None
            break
        except Exception as err:  # a cell raised, or the kernel died, timed out, could not start
            failure = err
            if not _died_starting(err):
                break
    wall_s = time.perf_counter() - started
    meta = report_metadata(running) if running.exists() else {}
    run_id = meta.get("run_id")
    final = name or (f"{path.stem}-{run_id}" if run_id else path.stem)
    executed = output_dir / f"{final}.ipynb"
    html = output_dir / f"{final}.html"
    if running.exists() and running != executed:
        running.replace(executed)
    title = meta.get("title") or final
    if failure is not None:
        error = _report_error(failure, path, executed, html)
        if executed.exists():
            export_html(executed, html, show_code=show_code, title=title)
        else:
            _write_error_html(html, final, error)
        raise error
    export_html(executed, html, show_code=show_code, title=title)
    if not keep_executed_notebook:
        executed.unlink(missing_ok=True)
    return ReportResult(
        notebook=path, parameters=parameters,
        executed_notebook_path=executed if keep_executed_notebook else None,
        html_path=html, wall_s=wall_s, run_id=run_id, title=title,
    )


def _died_starting(err: Exception) -> bool:
    """Whether ``err`` is a kernel that died before answering its first request (no cell ran)."""
    return isinstance(err, RuntimeError) and str(err).startswith(_DIED_STARTING)


def _report_error(err: Exception, path: Path, executed: Path, html: Path) -> ReportError:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        first_line = next((line for line in (err.source or "").splitlines() if line.strip()), "")
        cell_index = _failed_source_cell(executed)
        return ReportError(
            f"{path.name}: cell {cell_index} (In [{err.exec_count}]: {first_line.strip()[:60]!r}) "
            f"raised {err.ename}: {err.evalue}\n"
            f"  executed notebook: {executed}\n  HTML: {html}",
            notebook=str(path), cell_index=cell_index, exec_count=err.exec_count, ename=err.ename,
            evalue=err.evalue, executed_notebook_path=executed, html_path=html,
        )
    starts = f" ({KERNEL_START_ATTEMPTS} starts tried)" if _died_starting(err) else ""
    return ReportError(
        f"{path.name}: the run failed before finishing: {type(err).__name__}: {err}{starts}\n"
        f"  executed notebook: {executed if executed.exists() else '(not written)'}",
        notebook=str(path), ename=type(err).__name__, evalue=str(err),
        executed_notebook_path=executed if executed.exists() else None, html_path=html,
    )


@functools.lru_cache(maxsize=1)
def _encrypted_kernel() -> dict:
    """Papermill arguments that encrypt the kernel's channels where the kernel supports it.

    jupyter_client (8.10 and later) provisions CurveZMQ keys for a kernel whose
    kernelspec declares ``supported_encryption: curve`` (ipykernel 7.4 does)
    when its ``transport_encryption`` is ``"auto"``: the report kernel's
    localhost traffic is then encrypted, and ipykernel has nothing to warn
    about ("Kernel is running over TCP without encryption").  Other kernels,
    an older jupyter_client or a libzmq without Curve: the default manager.
    """
    import zmq
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    if not zmq.has("curve") or "transport_encryption" not in AsyncKernelManager.class_trait_names():
        return {}

    class EncryptedKernelManager(AsyncKernelManager):
        @default("transport_encryption")
        def _transport_encryption_default(self) -> str:
            return "auto"

    return {"kernel_manager_class": EncryptedKernelManager}


def _is_ipython(notebook: Path, kernel_name: str | None) -> bool:
    """Whether the kernel that will run ``notebook`` is a Python (ipykernel) one."""
    if kernel_name is not None:
        return kernel_name.startswith("python")
    import nbformat

    spec = nbformat.read(str(notebook), as_version=4).metadata.get("kernelspec", {})
    return spec.get("language", "python") == "python" and str(spec.get("name", "python3")).startswith("python")


def _failed_source_cell(executed: Path) -> int | None:
    """Index, in the *source* notebook, of the cell with an error output.

    Papermill's own index counts its injected cells; this one skips them, so
    it points at the cell the user wrote.
    """
    import nbformat

    try:
        nb = nbformat.read(str(executed), as_version=4)
    except Exception:  # pragma: no cover - papermill always writes a readable notebook
        return None
    index = 0
    for cell in nb.cells:
        if SKIPPED_TAGS.intersection(cell.get("metadata", {}).get("tags", ())):
            continue
        if any(o.get("output_type") == "error" for o in cell.get("outputs", ())):
            return index
        index += 1
    return None


def _write_error_html(html: Path, name: str, failure: ReportError | None) -> None:
    from html import escape

    message = escape(str(failure) if failure else "the notebook did not run")
    html.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(name)}</title></head>"
        f"<body><h1>{escape(name)}: failed</h1><pre>{message}</pre></body></html>",
        encoding="utf-8",
    )
