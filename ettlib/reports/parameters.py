"""A report notebook's parameters: what it declares, checking values, and values from the command line.

Parameters are checked **before any kernel starts** by a pluggable validator
(default :func:`validate_parameters`): every name must be declared in the
notebook's cell tagged ``parameters`` (unknown names get a "did you mean"),
and a value must fit the type of the declared annotation
(``epochs: int = 3``, ``end: Optional[int] = None``, ``symbols: list = [...]``)
or, without one, of the default's literal.  For the experiment notebook
(``02_experiment.ipynb``) the parameters are also checked by
``ExperimentConfig.from_dict``; more notebook-specific checks plug in with
:func:`register_notebook_validator`.

Values given on the command line
--------------------------------
``ett report -p NAME VALUE`` and ``ett run -p KEY=VALUE`` read a value the
same way, with :func:`parse_value`: **JSON** when the text is JSON (``3`` ->
int, ``1e-3`` -> float, ``true`` -> bool, ``null`` -> None, ``["ETH/USDT"]``
-> list, ``{"d_model": 16}`` -> dict), Python's ``None``, ``True`` and
``False`` too, and **anything else the text itself**.  Decided so on
purpose, against YAML's scalars: ``007`` stays the string ``"007"`` (YAML 1.1
reads 7), ``yes``/``no``/``on``/``off`` stay strings (YAML reads booleans),
``2024-01-02`` stays a string (YAML reads a date) and ``[a, b]`` is a string
(write lists as JSON: ``'["a", "b"]'``).  Parameter *files* (``-f``) are
YAML or JSON documents, read as such.

Examples
--------
>>> parse_cli_parameters([("lr", "1e-3"), ("epochs", "2"), ("name", "a b"), ("code", "007")])
{'lr': 0.001, 'epochs': 2, 'name': 'a b', 'code': '007'}
>>> check_parameter_type("epochs", 2.5, default_source="3")
Traceback (most recent call last):
...
ettlib.errors.ConfigError: parameter 'epochs' expects int (default 3), got float 2.5
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ettlib.errors import ConfigError, EttError, UnknownNameError

__all__ = [
    "EXPERIMENT_NOTEBOOK",
    "DB_PARAMETER",
    "notebook_parameters",
    "check_parameter_type",
    "register_notebook_validator",
    "validate_experiment_parameters",
    "experiment_config_names",
    "validate_parameters",
    "parse_value",
    "parse_cli_parameters",
    "load_parameter_file",
    "with_database",
    "existing_notebook",
]

#: The default experiment notebook, relative to the repository root.
EXPERIMENT_NOTEBOOK = Path("notebooks") / "02_experiment.ipynb"

#: The notebook parameter that names the candle database (``ExperimentConfig.db_path``).
DB_PARAMETER = "db_path"

_TYPES: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "list": (list, tuple),
    "List": (list, tuple),
    "tuple": (list, tuple),
    "Tuple": (list, tuple),
    "dict": (dict,),
    "Dict": (dict,),
    "None": (type(None),),
}


def existing_notebook(notebook: str | Path) -> Path:
    """``notebook`` as a Path, if it is an existing ``.ipynb`` file (else :class:`ConfigError`)."""
    path = Path(notebook)
    if path.suffix != ".ipynb":
        raise ConfigError(f"{path}: a report notebook is an .ipynb file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such notebook")
    return path


def notebook_parameters(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """The parameters a notebook declares: name -> {default, inferred_type_name, help}.

    Read from the cell tagged ``parameters`` without starting a kernel
    (``papermill.inspect_notebook``).  A notebook without such a cell
    declares nothing.
    """
    import papermill

    path = existing_notebook(notebook)
    return dict(papermill.inspect_notebook(str(path)))


def _annotation_types(node: ast.expr) -> tuple[type, ...] | None:
    """The types an annotation accepts (``Optional[int]``, ``int | None``, ``list[str]``), or None."""
    if isinstance(node, ast.Constant) and node.value is None:
        return (type(None),)
    if isinstance(node, ast.Name):
        return _TYPES.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _annotation_types(node.left), _annotation_types(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        outer, inner = node.value.id, node.slice
        if outer in ("Optional", "Union"):
            parts = inner.elts if isinstance(inner, ast.Tuple) else [inner]
            found: tuple[type, ...] = () if outer == "Union" else (type(None),)
            for part in parts:
                types = _annotation_types(part)
                if types is None:
                    return None
                found += types
            return found
        return _TYPES.get(outer)  # list[str]: a list (its items are the notebook's to check)
    return None


def _expected_types(default_source: str | None, annotation: str | None) -> tuple[str, tuple[type, ...]] | None:
    """(description, accepted types) for a parameter, or None when anything goes."""
    if annotation and annotation != "None":
        try:
            accepted = _annotation_types(ast.parse(annotation.strip(), mode="eval").body)
        except SyntaxError:
            accepted = None
        return None if accepted is None else (annotation, accepted)  # one we do not understand: no guess
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
    is never accepted for a number, an ``int`` is accepted for a ``float``,
    and a string is never a ``list``.

    Examples
    --------
    >>> check_parameter_type("lr", 1, default_source="0.5")   # int for float: fine
    >>> check_parameter_type("symbols", "ETH/USDT", annotation="list")
    Traceback (most recent call last):
    ...
    ettlib.errors.ConfigError: parameter 'symbols' expects list, got str 'ETH/USDT'
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
    ``parameters`` cell is skipped for them (so e.g. an ISO date string is
    accepted for a time the config also takes as epoch ms).
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
    path = existing_notebook(notebook)
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
# Values from the command line and from files
# --------------------------------------------------------------------------

_PYTHON_WORDS = {"None": None, "True": True, "False": False}


def parse_value(text: str) -> Any:
    """A command-line value: JSON, or ``None``/``True``/``False``, or else the text itself (see the module doc).

    >>> [parse_value(t) for t in ("3", "1e-3", "true", "None", '["a"]', "007", "yes", "2024-01-02")]
    [3, 0.001, True, None, ['a'], '007', 'yes', '2024-01-02']
    """
    text = str(text)
    stripped = text.strip()
    if stripped in _PYTHON_WORDS:
        return _PYTHON_WORDS[stripped]
    try:
        value = json.loads(stripped)
    except ValueError:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text  # NaN and Infinity are JSON to Python's parser only
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
    import yaml

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
    """Parameters from a YAML/JSON ``file`` and ``-p name value`` ``pairs`` (read by :func:`parse_value`).

    Pairs override the file.

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
        parameters[str(name)] = parse_value(str(text))
    return parameters


def with_database(notebook: str | Path, parameters: Mapping[str, Any], db: str | Path | None) -> dict[str, Any]:
    """``parameters`` plus ``db_path = db`` when the notebook declares it and it is not set.

    How ``--db`` reaches a notebook: explicit ``-p db_path ...`` wins, and a
    notebook without a ``db_path`` parameter is left alone.
    """
    out = dict(parameters)
    if db is not None and DB_PARAMETER not in out and DB_PARAMETER in notebook_parameters(notebook):
        out[DB_PARAMETER] = str(db)
    return out
