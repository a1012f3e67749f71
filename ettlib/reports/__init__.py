"""Reports: papermill runs of the notebooks, exported to HTML.

:mod:`~ettlib.reports.report` runs a notebook with validated parameters and
exports it (:func:`run_report`).
"""

from ettlib.reports.report import (
    check_parameter_type,
    configure_report_parser,
    DB_PARAMETER,
    EXAMPLE_DIR,
    EXAMPLE_REPORT_NAME,
    experiment_config_names,
    EXPERIMENT_NOTEBOOK,
    export_html,
    html_structure,
    load_parameter_file,
    notebook_parameters,
    notebook_structure,
    NotebookStructure,
    parse_cli_parameters,
    regenerate_example_report,
    register_notebook_validator,
    ReportError,
    ReportResult,
    run_report,
    validate_experiment_parameters,
    validate_parameters,
    with_database,
)

__all__ = [
    "check_parameter_type",
    "configure_report_parser",
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
    "regenerate_example_report",
    "register_notebook_validator",
    "ReportError",
    "ReportResult",
    "run_report",
    "validate_experiment_parameters",
    "validate_parameters",
    "with_database",
]
