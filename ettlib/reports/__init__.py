"""Reports: papermill runs of the notebooks, exported to HTML.

* :mod:`~ettlib.reports.parameters`: what a notebook declares, checking
  values before any kernel starts, and reading ``-p`` values;
* :mod:`~ettlib.reports.running`: :func:`run_report` (execute, name, export);
* :mod:`~ettlib.reports.example`: the committed example report and the
  structure check behind it.

The ``ett report`` command is in :mod:`ettlib.cli`.
"""

from ettlib.reports.example import (
    EXAMPLE_DIR,
    EXAMPLE_REPORT_NAME,
    NotebookStructure,
    html_structure,
    notebook_structure,
    regenerate_example_report,
)
from ettlib.reports.parameters import (
    DB_PARAMETER,
    EXPERIMENT_NOTEBOOK,
    check_parameter_type,
    experiment_config_names,
    load_parameter_file,
    notebook_parameters,
    parse_cli_parameters,
    parse_value,
    register_notebook_validator,
    validate_experiment_parameters,
    validate_parameters,
    with_database,
)
from ettlib.reports.running import REPORT_MIME, ReportError, ReportResult, export_html, run_report

__all__ = [
    "check_parameter_type",
    "DB_PARAMETER",
    "EXAMPLE_DIR",
    "EXAMPLE_REPORT_NAME",
    "experiment_config_names",
    "EXPERIMENT_NOTEBOOK",
    "export_html",
    "html_structure",
    "load_parameter_file",
    "notebook_parameters",
    "notebook_structure",
    "NotebookStructure",
    "parse_cli_parameters",
    "parse_value",
    "regenerate_example_report",
    "register_notebook_validator",
    "REPORT_MIME",
    "ReportError",
    "ReportResult",
    "run_report",
    "validate_experiment_parameters",
    "validate_parameters",
    "with_database",
]
