"""Experiment reports: run a parameterized notebook with papermill, export HTML.

A report is one notebook executed for one set of parameters.  The executed
notebook is kept beside an HTML export made by nbconvert, with the code cells
hidden by default (``show_code=True`` shows them) and every figure embedded
as a base64 PNG (IPython kernels start with ``--matplotlib=inline``), so the
HTML file is the whole report: it can be mailed or committed on its own.

Parameters are checked **before any kernel starts** by a pluggable
validator (default :func:`validate_parameters`): every name must be declared
in the notebook's cell tagged ``parameters`` (unknown names get a "did you
mean"), and a value must fit the type of the declared default (or its
annotation).  For the experiment notebook (``02_experiment.ipynb``) the
parameters are also checked by ``ExperimentConfig.from_dict`` when
:mod:`ettlib.experiment.runner` is importable; more notebook-specific
checks plug in with :func:`register_notebook_validator`.

The kernel's channels are encrypted (CurveZMQ) where the kernel supports it
(see :func:`_encrypted_kernel`).

A run that fails still writes its executed notebook (papermill puts an error
banner at its top) and an HTML export showing the error, then raises
:class:`ReportError` naming the cell and the error.

Examples
--------
>>> parse_cli_parameters([("lr", "1e-3"), ("epochs", "2"), ("name", "a b")])
{'lr': 0.001, 'epochs': 2, 'name': 'a b'}
>>> check_parameter_type("epochs", 2.5, default_source="3")
Traceback (most recent call last):
...
ettlib.errors.ConfigError: parameter 'epochs' expects int (default 3), got float 2.5
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import yaml

from ettlib.errors import ConfigError, EttError, UnknownNameError

__all__ = [
    "ReportError",
    "ReportResult",
    "NotebookStructure",
    "EXPERIMENT_NOTEBOOK",
    "EXAMPLE_DIR",
    "EXAMPLE_REPORT_NAME",
    "notebook_parameters",
    "validate_parameters",
    "register_notebook_validator",
    "validate_experiment_parameters",
    "experiment_config_names",
    "check_parameter_type",
    "parse_cli_parameters",
    "load_parameter_file",
    "run_report",
    "export_html",
    "notebook_structure",
    "html_structure",
    "regenerate_example_report",
    "configure_report_parser",
    "with_database",
    "DB_PARAMETER",
]

#: The default experiment notebook, relative to the repository root.
EXPERIMENT_NOTEBOOK = Path("notebooks") / "02_experiment.ipynb"

#: Folder of the committed example report (``reports/`` is otherwise git-ignored).
EXAMPLE_DIR = Path("reports") / "example"

#: Base name of the committed example report: ``reports/example/02_experiment.html``.
EXAMPLE_REPORT_NAME = "02_experiment"

#: Parameters the example report is regenerated with (small and quick).
EXAMPLE_PARAMETERS: dict[str, Any] = {}


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
    """Where one report's files are and how its run went."""

    notebook: Path
    parameters: dict[str, Any]
    executed_notebook_path: Path | None
    html_path: Path
    wall_s: float
    ok: bool = True
    error: str | None = None


# --------------------------------------------------------------------------
# Parameters: what the notebook declares, and checking values against it
# --------------------------------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "list": (list, tuple),
    "tuple": (list, tuple),
    "dict": (dict,),
}


def notebook_parameters(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """The parameters a notebook declares: name -> {default, inferred_type_name, help}.

    Read from the cell tagged ``parameters`` without starting a kernel
    (``papermill.inspect_notebook``).  A notebook without such a cell
    declares nothing.
    """
    import papermill

    path = _existing_notebook(notebook)
    return dict(papermill.inspect_notebook(str(path)))


def _expected_types(default_source: str | None, annotation: str | None) -> tuple[str, tuple[type, ...]] | None:
    """(description, accepted types) for a parameter, or None when anything goes."""
    if annotation and annotation != "None":
        names = [n.strip() for n in re.split(r"[|,\[\]]", annotation.replace("Optional", "")) if n.strip()]
        accepted: tuple[type, ...] = ()
        for n in names:
            if n == "None":
                accepted += (type(None),)
            elif n in _TYPES:
                accepted += _TYPES[n]
            else:
                return None  # an annotation we do not understand: do not guess
        return annotation, accepted
    if default_source is None:
        return None
    try:
        default = ast.literal_eval(default_source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None  # an expression (Path(...), a call): its type is unknown here
    if default is None:
        return None
    kind = type(default).__name__
    if kind not in _TYPES:
        return None
    return f"{kind} (default {default_source})", _TYPES[kind]


def check_parameter_type(
    name: str, value: Any, *, default_source: str | None = None, annotation: str | None = None
) -> None:
    """Raise :class:`ConfigError` if ``value`` does not fit the parameter's type.

    The type comes from the annotation in the ``parameters`` cell when there
    is one (``epochs: int = 3``), else from the default's literal.  ``bool``
    is never accepted for a number, an ``int`` is accepted for a ``float``.

    Examples
    --------
    >>> check_parameter_type("lr", 1, default_source="0.5")   # int for float: fine
    >>> check_parameter_type("flag", 1, default_source="False")
    Traceback (most recent call last):
    ...
    ettlib.errors.ConfigError: parameter 'flag' expects bool (default False), got int 1
    """
    expected = _expected_types(default_source, annotation)
    if expected is None:
        return
    description, accepted = expected
    if isinstance(value, bool) and bool not in accepted:
        ok = False
    else:
        ok = isinstance(value, accepted)
    if not ok:
        raise ConfigError(
            f"parameter {name!r} expects {description}, got {type(value).__name__} {value!r}"
        )


NotebookValidator = Callable[[Path, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class _RegisteredValidator:
    validator: NotebookValidator
    typed_names: Callable[[], Iterable[str]] | None


#: Extra checks by notebook file name (e.g. the experiment config's own).
_NOTEBOOK_VALIDATORS: dict[str, _RegisteredValidator] = {}


def register_notebook_validator(
    notebook_name: str,
    validator: NotebookValidator,
    *,
    typed_names: Callable[[], Iterable[str]] | None = None,
) -> None:
    """Run ``validator(notebook_path, merged_parameters)`` for notebooks named so.

    ``merged_parameters`` are the notebook's literal defaults overridden by
    the caller's values.  The validator raises :class:`ConfigError` on bad
    input.  ``typed_names()`` (optional) gives the parameter names whose
    types the validator checks itself; the generic check against the
    ``parameters`` cell's defaults is skipped for them (so e.g. an ISO date
    string is accepted for a time the config also takes as epoch ms).
    """
    _NOTEBOOK_VALIDATORS[notebook_name] = _RegisteredValidator(validator, typed_names)


def _experiment_config_class():
    """``ExperimentConfig``, or None (with a warning) when it cannot be imported."""
    try:
        from ettlib.experiment.runner import ExperimentConfig
    except ImportError as err:
        warnings.warn(
            f"ExperimentConfig is not available ({err}); only the notebook's parameters cell was checked",
            stacklevel=4,
        )
        return None
    return ExperimentConfig


def experiment_config_names() -> list[str]:
    """Field names of ``ExperimentConfig`` (empty, with a warning, when it is not importable)."""
    config = _experiment_config_class()
    if config is None or not dataclasses.is_dataclass(config):
        return []
    return [f.name for f in dataclasses.fields(config)]


def validate_experiment_parameters(notebook: Path, merged: dict[str, Any]) -> None:
    """Check the experiment notebook's parameters with ``ExperimentConfig.from_dict``.

    Only the names that are fields of ``ExperimentConfig`` are passed (the
    notebook may declare more, e.g. display options).  Skipped with a
    warning while :mod:`ettlib.experiment.runner` is not importable.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warned once already, by the type-name lookup
        config_class = _experiment_config_class()
    if config_class is None:
        return
    known = set(experiment_config_names())
    config = {k: v for k, v in merged.items() if k in known} if known else dict(merged)
    try:
        config_class.from_dict(config)
    except EttError:
        raise
    except (TypeError, ValueError) as err:  # a config that raised a plain error
        raise ConfigError(f"{notebook.name}: invalid experiment parameters: {err}") from err


register_notebook_validator(
    EXPERIMENT_NOTEBOOK.name, validate_experiment_parameters, typed_names=experiment_config_names
)


def validate_parameters(notebook: str | Path, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``parameters`` against the notebook before any kernel starts.

    Returns the merged parameters (the notebook's literal defaults overridden
    by ``parameters``).  Raises :class:`UnknownNameError` for a name the
    notebook does not declare (with the closest names), :class:`ConfigError`
    for a value of the wrong type, then runs the notebook's registered
    validator (see :func:`register_notebook_validator`).
    """
    path = _existing_notebook(notebook)
    if not isinstance(parameters, Mapping):
        raise ConfigError(f"parameters must be a mapping of name to value, got {type(parameters).__name__}")
    declared = notebook_parameters(path)
    if not declared and parameters:
        raise ConfigError(
            f"{path.name} has no cell tagged 'parameters', so it takes no parameters "
            f"(got {', '.join(map(repr, parameters))})"
        )
    registered = _NOTEBOOK_VALIDATORS.get(path.name)
    typed_elsewhere = set(registered.typed_names()) if registered and registered.typed_names else set()
    for name, value in parameters.items():
        if name not in declared:
            raise UnknownNameError(f"{path.name} parameter", name, declared)
        if name in typed_elsewhere:
            continue
        spec = declared[name]
        check_parameter_type(
            name, value, default_source=spec.get("default"), annotation=spec.get("inferred_type_name")
        )
    merged: dict[str, Any] = {}
    for name, spec in declared.items():
        try:
            merged[name] = ast.literal_eval(spec.get("default") or "None")
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass  # an expression default stays for the notebook to evaluate
    merged.update(parameters)
    if registered is not None:
        registered.validator(path, merged)
    return merged


# --------------------------------------------------------------------------
# Parameters from the command line and from files
# --------------------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _parse_value(text: str) -> Any:
    """A ``-p`` value: YAML scalar/list/mapping, numbers like ``1e-3`` included."""
    if _NUMBER.fullmatch(text.strip()):
        number = float(text)
        return int(text) if re.fullmatch(r"[-+]?\d+", text.strip()) else number
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None and text.strip() not in ("", "~", "null", "Null", "NULL", "None"):
        return text
    if text.strip() == "None":
        return None
    if not _is_plain(value):
        return text  # e.g. a YAML date: keep the user's text, JSON can hold it
    return value


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def load_parameter_file(path: str | Path) -> Any:
    """Load a YAML or JSON parameter file (JSON is YAML) as plain data."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such parameter file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML/JSON: {err}") from err
    if not _is_plain(data):
        raise ConfigError(f"{path}: values must be numbers, strings, booleans, null, lists or mappings")
    return data


def parse_cli_parameters(
    pairs: Iterable[tuple[str, str]] | None = None, file: str | Path | None = None
) -> dict[str, Any]:
    """Parameters from a YAML/JSON ``file`` and ``-p name value`` ``pairs``.

    Pair values are parsed as YAML (``2`` -> int, ``true`` -> bool,
    ``[1, 2]`` -> list, ``None``/``null`` -> None), and numbers such as
    ``1e-3`` as numbers; anything else stays a string.  Pairs override the
    file.

    Examples
    --------
    >>> parse_cli_parameters([("flag", "true"), ("xs", "[1, 2]"), ("none", "None")])
    {'flag': True, 'xs': [1, 2], 'none': None}
    """
    parameters: dict[str, Any] = {}
    if file is not None:
        data = load_parameter_file(file)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: a parameter file holds a mapping of name to value")
        parameters.update(data)
    for pair in pairs or ():
        if len(pair) != 2:
            raise ConfigError(f"a parameter is a name and a value, got {pair!r}")
        name, text = pair
        if not str(name).isidentifier():
            raise ConfigError(f"parameter name {name!r} is not a Python identifier")
        parameters[str(name)] = _parse_value(str(text))
    return parameters


# --------------------------------------------------------------------------
# Running a report
# --------------------------------------------------------------------------


def _existing_notebook(notebook: str | Path) -> Path:
    path = Path(notebook)
    if path.suffix != ".ipynb":
        raise ConfigError(f"{path}: a report notebook is an .ipynb file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such notebook")
    return path


def export_html(executed_notebook: str | Path, html_path: str | Path, *, show_code: bool = False,
                title: str | None = None) -> Path:
    """Export an executed notebook to one self-contained HTML file.

    Code cells' inputs are hidden unless ``show_code``; outputs (figures as
    base64 PNG, tables, text, errors) are always shown, and markdown images
    are embedded too.
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


def run_report(
    notebook: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    output_dir: str | Path = "reports",
    name: str | None = None,
    show_code: bool = False,
    kernel_name: str | None = None,
    cwd: str | Path | None = None,
    validate: Callable[[Path, Mapping[str, Any]], Any] | None = validate_parameters,
    keep_executed_notebook: bool = True,
    start_timeout: int = 60,
    inline_figures: bool = True,
) -> ReportResult:
    """Execute ``notebook`` with ``parameters`` and export an HTML report.

    Writes ``output_dir/name.ipynb`` (the executed notebook) and
    ``output_dir/name.html``; ``name`` defaults to the notebook's stem.
    ``validate(notebook, parameters)`` runs first, before any kernel starts
    (pass ``None`` when the caller has validated already).  ``cwd`` is the
    kernel's working directory (default: this process's).

    ``inline_figures`` starts an IPython kernel with ``--matplotlib=inline``,
    so every matplotlib ``Figure`` a cell displays becomes a PNG output --
    also one built outside pyplot, which a bare kernel shows as text only.

    Raises :class:`ReportError` (after writing both files) when a cell
    raises or the kernel dies, naming the cell and the error.
    """
    path = _existing_notebook(notebook)
    parameters = dict(parameters or {})
    if validate is not None:
        validate(path, parameters)
    name = name or path.stem
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"report name {name!r} must be a plain file name")
    output_dir = Path(output_dir)
    executed = output_dir / f"{name}.ipynb"
    html = output_dir / f"{name}.html"
    if executed.resolve() == path.resolve():
        raise ConfigError(f"{executed}: the executed notebook would overwrite its source; "
                          "choose another output_dir or name")
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in (executed, html):
        stale.unlink(missing_ok=True)

    import papermill
    from papermill.exceptions import PapermillExecutionError

    started = time.perf_counter()
    failure: ReportError | None = None
    try:
        papermill.execute_notebook(
            str(path),
            str(executed),
            parameters=parameters,
            kernel_name=kernel_name,
            progress_bar=False,
            log_output=False,
            cwd=str(cwd) if cwd is not None else None,
            start_timeout=start_timeout,
            **({"extra_arguments": ["--matplotlib=inline"]} if inline_figures and _is_ipython(path, kernel_name) else {}),
            **_encrypted_kernel(),
        )
    except PapermillExecutionError as err:
        first_line = next((line for line in (err.source or "").splitlines() if line.strip()), "")
        cell_index = _failed_source_cell(executed)
        failure = ReportError(
            f"{path.name}: cell {cell_index} (In [{err.exec_count}]: {first_line.strip()[:60]!r}) "
            f"raised {err.ename}: {err.evalue}\n"
            f"  executed notebook: {executed}\n  HTML: {html}",
            notebook=str(path),
            cell_index=cell_index,
            exec_count=err.exec_count,
            ename=err.ename,
            evalue=err.evalue,
            executed_notebook_path=executed,
            html_path=html,
        )
    except Exception as err:  # kernel died, timed out, could not start
        failure = ReportError(
            f"{path.name}: the run failed before finishing: {type(err).__name__}: {err}\n"
            f"  executed notebook: {executed if executed.exists() else '(not written)'}",
            notebook=str(path),
            ename=type(err).__name__,
            evalue=str(err),
            executed_notebook_path=executed if executed.exists() else None,
            html_path=html,
        )
    wall_s = time.perf_counter() - started
    if executed.exists():
        export_html(executed, html, show_code=show_code, title=name)
    else:
        _write_error_html(html, name, failure)
    if failure is not None:
        raise failure
    if not keep_executed_notebook:
        executed.unlink(missing_ok=True)
    return ReportResult(
        notebook=path,
        parameters=parameters,
        executed_notebook_path=executed if keep_executed_notebook else None,
        html_path=html,
        wall_s=wall_s,
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
        if _SKIPPED_TAGS.intersection(cell.get("metadata", {}).get("tags", ())):
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


# --------------------------------------------------------------------------
# Structure of a notebook and of its HTML report (for the example-report check)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotebookStructure:
    """The outline of a notebook: cell kinds, tags and markdown headings, in order.

    Papermill's injected-parameters cell and its error banner are left out,
    so a source notebook and a report of it have the same structure.
    """

    cell_types: tuple[str, ...]
    tags: tuple[tuple[str, ...], ...]
    headings: tuple[str, ...]

    def differences(self, other: "NotebookStructure") -> list[str]:
        """Readable differences from ``other`` (empty when they match)."""
        out = []
        if self.cell_types != other.cell_types:
            out.append(f"cell types differ: {self.cell_types} != {other.cell_types}")
        if self.tags != other.tags:
            out.append(f"cell tags differ: {self.tags} != {other.tags}")
        if self.headings != other.headings:
            out.append(f"headings differ: {self.headings} != {other.headings}")
        return out


_SKIPPED_TAGS = {"injected-parameters", "papermill-error-cell-tag"}
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")


def notebook_structure(notebook: str | Path) -> NotebookStructure:
    """The structure of a notebook file (source or executed)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cell_types, tags, headings = [], [], []
    for cell in nb.cells:
        cell_tags = tuple(cell.get("metadata", {}).get("tags", ()))
        if _SKIPPED_TAGS.intersection(cell_tags):
            continue
        cell_types.append(cell.cell_type)
        tags.append(tuple(sorted(cell_tags)))
        if cell.cell_type == "markdown":
            in_fence = False
            for line in cell.source.splitlines():
                if line.lstrip().startswith("```"):
                    in_fence = not in_fence
                match = None if in_fence else _HEADING.match(line)
                if match:
                    headings.append(match.group(2))
    return NotebookStructure(tuple(cell_types), tuple(tags), tuple(headings))


class _CellOutline(HTMLParser):
    """Collects nbconvert-lab cells (type, celltag_ classes) and the h1-h6 texts of markdown cells.

    Headings inside outputs (e.g. ``display(Markdown("## x"))``) are not
    part of the notebook's structure and are left out.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: list[tuple[str, tuple[str, ...]]] = []
        self.headings: list[str] = []
        self._div_depth = 0
        self._cell_depth: int | None = None  # div depth of the open cell
        self._in_markdown_input = False
        self._markdown_depth: int | None = None
        self._heading: list[str] | None = None
        self._anchor = False

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "div":
            self._div_depth += 1
            if "jp-Cell" in classes:
                kind = "markdown" if "jp-MarkdownCell" in classes else "code" if "jp-CodeCell" in classes else "raw"
                cell_tags = tuple(sorted(c[len("celltag_"):] for c in classes if c.startswith("celltag_")))
                self.cells.append((kind, cell_tags))
                self._cell_depth = self._div_depth
            elif self.cells and self.cells[-1][0] == "markdown" and "jp-MarkdownOutput" in classes:
                self._markdown_depth = self._div_depth
        elif re.fullmatch(r"h[1-6]", tag) and self._markdown_depth is not None:
            self._heading = []
        elif tag == "a" and self._heading is not None and "anchor-link" in classes:
            self._anchor = True

    def handle_endtag(self, tag):
        if tag == "div":
            if self._markdown_depth == self._div_depth:
                self._markdown_depth = None
            if self._cell_depth == self._div_depth:
                self._cell_depth = None
            self._div_depth -= 1
        elif tag == "a" and self._anchor:
            self._anchor = False
        elif re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        if self._heading is not None and not self._anchor:
            self._heading.append(data)


def html_structure(html_path: str | Path) -> NotebookStructure:
    """The structure of an nbconvert (lab template) HTML report."""
    parser = _CellOutline()
    parser.feed(Path(html_path).read_text(encoding="utf-8"))
    kept = [(k, t) for k, t in parser.cells if not _SKIPPED_TAGS.intersection(t)]
    return NotebookStructure(
        tuple(k for k, _ in kept), tuple(t for _, t in kept), tuple(parser.headings)
    )


def regenerate_example_report(
    notebook: str | Path = EXPERIMENT_NOTEBOOK,
    *,
    output_dir: str | Path = EXAMPLE_DIR,
    parameters: Mapping[str, Any] | None = None,
    name: str = EXAMPLE_REPORT_NAME,
    cwd: str | Path | None = None,
) -> ReportResult:
    """Rebuild the committed example report (``reports/example/02_experiment.html``).

    Runs ``notebook`` (the experiment notebook by default) with
    :data:`EXAMPLE_PARAMETERS` updated by ``parameters``, keeps only the
    HTML, and checks that its structure (cells, tags, headings) matches the
    notebook's (raises :class:`ReportError` if not).  When the notebook can
    make its own demo data (it declares ``db_path`` and
    ``make_demo_if_missing``) and no ``db_path`` is given, it runs on a fresh
    temporary database, so the example is the same on every machine.
    Command: ``ett report --example``.
    """
    params = {**EXAMPLE_PARAMETERS, **(parameters or {})}
    declared = notebook_parameters(notebook)
    with tempfile.TemporaryDirectory(prefix="ett-example-") as tmp:
        if DB_PARAMETER not in params and {DB_PARAMETER, "make_demo_if_missing"} <= set(declared):
            params[DB_PARAMETER] = str(Path(tmp) / "ett.duckdb")
        result = run_report(notebook, params, output_dir=output_dir, name=name, cwd=cwd,
                            keep_executed_notebook=False)
    problems = notebook_structure(notebook).differences(html_structure(result.html_path))
    if problems:
        raise ReportError(f"{result.html_path} does not match {notebook}: " + "; ".join(problems))
    return result


# --------------------------------------------------------------------------
# Command line (the lead wires these into ettlib.cli)
# --------------------------------------------------------------------------


#: The notebook parameter that names the candle database (``ExperimentConfig.db_path``).
DB_PARAMETER = "db_path"


def with_database(notebook: str | Path, parameters: Mapping[str, Any], db: str | Path | None) -> dict[str, Any]:
    """``parameters`` plus ``db_path = db`` when the notebook declares it and it is not set.

    How ``--db`` reaches a notebook: explicit ``-p db_path ...`` wins, and a
    notebook without a ``db_path`` parameter is left alone.
    """
    out = dict(parameters)
    if db is not None and DB_PARAMETER not in out and DB_PARAMETER in notebook_parameters(notebook):
        out[DB_PARAMETER] = str(db)
    return out


def configure_report_parser(parser, default_db: Path | None = None) -> None:
    """Add ``ett report`` arguments to an argparse parser; sets ``func``."""
    parser.add_argument("notebook", nargs="?", type=Path, default=EXPERIMENT_NOTEBOOK,
                        help="notebook to run (default: %(default)s)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                        default=[], help="a parameter (value parsed as YAML); repeatable")
    parser.add_argument("-f", "--parameters-file", type=Path, help="YAML or JSON file of parameters")
    parser.add_argument("--db", type=Path, default=default_db,
                        help="candle database, passed as the notebook's db_path parameter"
                        + (" (default: %(default)s)" if default_db else ""))
    parser.add_argument("--output-dir", type=Path, help="default: reports (with --example: reports/example)")
    parser.add_argument("--name", help="base name of the report files (default: the notebook's)")
    parser.add_argument("--show-code", action="store_true", help="show code cells in the HTML")
    parser.add_argument("--kernel", dest="kernel_name", help="Jupyter kernel name (default: the notebook's)")
    parser.add_argument("--example", action="store_true",
                        help=f"regenerate {EXAMPLE_DIR / EXAMPLE_REPORT_NAME}.html from the notebook "
                        "(on fresh demo data unless --db or -p db_path is given)")
    parser.set_defaults(func=_cmd_report, _default_db=default_db)


def _cmd_report(args) -> int:
    parameters = parse_cli_parameters([tuple(p) for p in args.parameter], args.parameters_file)
    if args.example:
        explicit_db = args.db if args.db != args._default_db else None
        result = regenerate_example_report(
            args.notebook, output_dir=args.output_dir or EXAMPLE_DIR,
            parameters=with_database(args.notebook, parameters, explicit_db),
        )
    else:
        result = run_report(args.notebook, with_database(args.notebook, parameters, args.db),
                            output_dir=args.output_dir or "reports", name=args.name,
                            show_code=args.show_code, kernel_name=args.kernel_name)
    print(result.html_path)
    return 0


def _json_default(value: Any) -> str:  # pragma: no cover - used by sweep manifests
    return str(value)


def dump_parameters(parameters: Mapping[str, Any]) -> str:
    """Parameters as canonical JSON (sorted keys), for manifests and names."""
    return json.dumps(dict(parameters), sort_keys=True, default=_json_default)
