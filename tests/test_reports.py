"""Reports: papermill runs with real kernels, HTML exports parsed and checked."""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import pickle
import shutil
import warnings
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from ettlib.cli import configure_report_parser
from ettlib.errors import ConfigError, EttError, UnknownNameError
from ettlib.reports import (
    EXAMPLE_DIR,
    EXAMPLE_REPORT_NAME,
    EXPERIMENT_NOTEBOOK,
    ReportError,
    check_parameter_type,
    export_html,
    html_structure,
    notebook_structure,
    parse_cli_parameters,
    regenerate_example_report,
    register_notebook_validator,
    run_report,
    validate_parameters,
    with_database,
)
from ettlib.store.catalog import reading_runs

NOTEBOOKS = Path(__file__).parent / "notebooks"
FIXTURE = NOTEBOOKS / "report_fixture.ipynb"
BROKEN = NOTEBOOKS / "broken.ipynb"
ROOT = Path(__file__).parent.parent


class _Page(HTMLParser):
    """Collects img sources, tables (as rows of cell texts) and visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in ("style", "script"):
            self._in_style = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag in ("style", "script"):
            self._in_style = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if not self._in_style:
            self.text.append(data)


def parse_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    params = {"seed": 4, "learning_rate": 0.25, "epochs": 2, "label": "param-label-xyz"}
    return run_report(FIXTURE, params, output_dir=out), params


def test_report_embeds_images_table_and_manifest_and_hides_code(fixture_report):
    result, params = fixture_report
    assert result.executed_notebook_path.is_file() and result.html_path.is_file()
    page = parse_page(result.html_path)
    pngs = [src for src in page.images if src.startswith("data:image/png;base64,")]
    assert pngs, "no embedded PNG figure"
    assert base64.b64decode(pngs[0].split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert not any(src and not src.startswith("data:") for src in page.images), "an image is a file link"
    # The metrics table holds the score the parameters imply (computed here independently).
    expected_score = params["seed"] + params["learning_rate"] * params["epochs"]
    rows = [row for table in page.tables for row in table]
    label_rows = [row for row in rows if row and row[0] == params["label"]]
    assert label_rows, f"no metrics row for {params['label']!r}: {rows}"
    assert float(label_rows[0][1]) == pytest.approx(expected_score)
    text = "".join(page.text)
    assert "RUN MANIFEST" in text and '"data_fingerprint": "fixture"' in text
    assert '"seed": 4' in text
    assert "FIXTURE-CODE-MARKER" not in text  # code hidden by default
    # The kept executed notebook has the injected parameters and real outputs.
    nb = nbformat.read(str(result.executed_notebook_path), as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "param-label-xyz" in injected[0].source
    assert sum(len(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code") >= 3


def test_show_code_puts_the_code_in_the_html(fixture_report, tmp_path):
    result, _ = fixture_report
    shown = export_html(result.executed_notebook_path, tmp_path / "shown.html", show_code=True)
    assert "FIXTURE-CODE-MARKER" in "".join(parse_page(shown).text)


def test_report_kernels_talk_over_encrypted_channels(tmp_path, capfd):
    """ipykernel warns on its stderr (ours: the kernel inherits it) when its channels are plain TCP."""
    from ettlib.reports.running import _encrypted_kernel

    manager = _encrypted_kernel().get("kernel_manager_class")
    if manager is None:
        pytest.skip("this jupyter_client or libzmq cannot encrypt kernel channels")
    assert manager().transport_encryption == "auto"
    run_report(FIXTURE, {}, output_dir=tmp_path)
    assert "without encryption" not in capfd.readouterr().err


def test_failed_run_keeps_evidence_and_names_the_cell(tmp_path):
    with pytest.raises(ReportError) as info:
        run_report(BROKEN, {"divisor": 3}, output_dir=tmp_path)
    err = info.value
    assert isinstance(err, EttError)
    assert err.ename == "ValueError" and "deliberately broken (divisor=3)" in err.evalue
    assert "ValueError" in str(err) and f"cell {err.cell_index}" in str(err)
    source = nbformat.read(str(BROKEN), as_version=4)
    assert err.cell_index == 3 and "raise ValueError" in source.cells[err.cell_index].source
    nb = nbformat.read(str(err.executed_notebook_path), as_version=4)
    never = [c for c in nb.cells if "never reached" in c.source]
    assert never and not never[0].get("outputs")
    html_text = "".join(parse_page(err.html_path).text)
    assert "deliberately broken (divisor=3)" in html_text
    copy = pickle.loads(pickle.dumps(err))  # crosses process boundaries intact
    assert (copy.cell_index, copy.ename, copy.html_path, str(copy)) == (3, "ValueError", err.html_path, str(err))


def _counting_kernel(tmp_path, monkeypatch, dies: int) -> tuple[str, Path]:
    """A real ipykernel spec whose first ``dies`` starts exit before the kernel binds anything.

    Returns its name (found through ``JUPYTER_PATH``) and the file that counts its starts.
    """
    import sys

    counter = tmp_path / "starts"
    script = tmp_path / "kernel.py"
    script.write_text(
        "import pathlib, sys\n"
        f"counter = pathlib.Path({str(counter)!r})\n"
        "starts = int(counter.read_text()) if counter.exists() else 0\n"
        "counter.write_text(str(starts + 1))\n"
        f"if starts < {dies}:\n"
        "    sys.exit(1)  # as a kernel whose port was taken: dead before its first reply\n"
        "from ipykernel import kernelapp\n"
        "kernelapp.launch_new_instance()\n")
    name = "python3-counted"
    spec = tmp_path / "jupyter" / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(script), "-f", "{connection_file}"], "display_name": name,
        "language": "python", "metadata": {"supported_encryption": ["curve"]}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return name, counter


def test_a_kernel_that_dies_while_starting_is_started_again(tmp_path, monkeypatch):
    from ettlib.reports.running import KERNEL_START_ATTEMPTS

    assert KERNEL_START_ATTEMPTS >= 2
    name, starts = _counting_kernel(tmp_path, monkeypatch, dies=KERNEL_START_ATTEMPTS - 1)
    result = run_report(FIXTURE, {}, output_dir=tmp_path / "out", kernel_name=name)
    assert starts.read_text() == str(KERNEL_START_ATTEMPTS)
    assert parse_page(result.html_path).images  # the whole report, from the kernel that started


def test_a_kernel_that_never_starts_is_an_error_after_the_last_attempt(tmp_path, monkeypatch):
    from ettlib.reports.running import KERNEL_START_ATTEMPTS

    name, starts = _counting_kernel(tmp_path, monkeypatch, dies=KERNEL_START_ATTEMPTS + 5)
    with pytest.raises(ReportError) as info:
        run_report(FIXTURE, {}, output_dir=tmp_path / "out", kernel_name=name)
    assert starts.read_text() == str(KERNEL_START_ATTEMPTS)
    assert "Kernel died before replying" in str(info.value)
    assert f"{KERNEL_START_ATTEMPTS} starts tried" in str(info.value)


def test_a_cell_that_raises_is_not_run_again(tmp_path, monkeypatch):
    name, starts = _counting_kernel(tmp_path, monkeypatch, dies=0)
    with pytest.raises(ReportError, match="deliberately broken"):
        run_report(BROKEN, {"divisor": 3}, output_dir=tmp_path / "out", kernel_name=name)
    assert starts.read_text() == "1"


def test_unknown_parameter_suggests_and_starts_no_kernel(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(UnknownNameError) as info:
        run_report(FIXTURE, {"learning_rat": 0.1}, output_dir=out)
    assert "learning_rate" in str(info.value) and "did you mean" in str(info.value)
    assert not out.exists()  # failed before papermill wrote anything


@pytest.mark.parametrize(
    "params, needle",
    [({"epochs": "three"}, "'epochs' expects int"), ({"fail": 1}, "'fail' expects bool"),
     ({"learning_rate": "fast"}, "'learning_rate' expects float"), ({"epochs": True}, "'epochs' expects int")],
)
def test_wrong_type_is_a_config_error(tmp_path, params, needle):
    with pytest.raises(ConfigError, match=needle):
        run_report(FIXTURE, params, output_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_a_report_never_overwrites_its_source_notebook(tmp_path):
    source = tmp_path / "nb.ipynb"
    shutil.copy(FIXTURE, source)
    before = source.read_bytes()
    with pytest.raises(ConfigError, match="overwrite its source"):
        run_report(source, {}, output_dir=tmp_path)
    assert source.read_bytes() == before


def test_validate_returns_merged_defaults_and_accepts_int_for_float():
    merged = validate_parameters(FIXTURE, {"learning_rate": 1, "label": "x"})
    assert merged["learning_rate"] == 1 and merged["label"] == "x"
    assert merged["epochs"] == 3 and merged["fail"] is False  # defaults from the parameters cell


def test_annotations_decide_the_type():
    check_parameter_type("n", None, annotation="int | None", default_source="None")
    check_parameter_type("n", 3, annotation="Optional[int]")
    with pytest.raises(ConfigError):
        check_parameter_type("n", "3", annotation="int | None")
    check_parameter_type("p", "anything", default_source="Path('x')")  # an expression: not guessed


def test_registered_validator_runs_on_merged_parameters(tmp_path):
    notebook = tmp_path / "custom_nb.ipynb"
    shutil.copy(FIXTURE, notebook)
    seen = []

    def validator(path, merged):
        seen.append(merged)
        if merged["epochs"] > 10:
            raise ConfigError("epochs above 10 are not allowed here")

    register_notebook_validator("custom_nb.ipynb", validator)
    validate_parameters(notebook, {"seed": 1})
    assert seen[-1]["seed"] == 1 and seen[-1]["epochs"] == 3
    with pytest.raises(ConfigError, match="above 10"):
        validate_parameters(notebook, {"epochs": 11})


def _experiment_like_notebook(tmp_path) -> Path:
    """A notebook named like the experiment notebook, with a few real config knobs."""
    nb = nbformat.v4.new_notebook(metadata=nbformat.read(str(FIXTURE), as_version=4).metadata)
    nb.cells = [nbformat.v4.new_code_cell(
        "context_length = 16\npivot_levels = 2\nstart = 0\nseed = 0\nshow_plots = True",
        metadata={"tags": ["parameters"]})]
    path = tmp_path / EXPERIMENT_NOTEBOOK.name
    nbformat.write(nb, str(path))
    return path


def test_experiment_notebook_is_checked_by_experiment_config_when_available(tmp_path):
    notebook = _experiment_like_notebook(tmp_path)
    with pytest.raises(UnknownNameError, match="did you mean 'context_length'"):
        validate_parameters(notebook, {"contxt_length": 8})
    try:
        importlib.import_module("ettlib.experiment.runner")
    except ImportError:
        with pytest.warns(UserWarning, match="ExperimentConfig is not available"):
            validate_parameters(notebook, {"seed": 1})
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_parameters(notebook, {"seed": 1, "context_length": 8})
        # The config (not the literal default 0) decides a time's type: ISO dates are fine.
        assert validate_parameters(notebook, {"start": "2024-01-01"})["start"] == "2024-01-01"
    # A rule only ExperimentConfig knows: pivot levels are 1..5.
    with pytest.raises(ConfigError, match="pivot_levels"):
        validate_parameters(notebook, {"pivot_levels": 9})
    with pytest.raises(ConfigError, match="seed"):
        validate_parameters(notebook, {"seed": "one"})
    # A notebook-only knob keeps the generic check.
    with pytest.raises(ConfigError, match="'show_plots' expects bool"):
        validate_parameters(notebook, {"show_plots": "yes"})


def test_parse_cli_parameters_file_then_pairs(tmp_path):
    file = tmp_path / "p.yaml"
    file.write_text("epochs: 5\nlabel: from-file\nlayers: [1, 2]\n")
    params = parse_cli_parameters([("epochs", "7"), ("lr", "1e-3"), ("flag", "false"), ("word", "hello world")], file)
    assert params == {"epochs": 7, "label": "from-file", "layers": [1, 2], "lr": 0.001, "flag": False,
                      "word": "hello world"}
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"a": 1.5, "b": None}))
    assert parse_cli_parameters(None, js) == {"a": 1.5, "b": None}
    assert parse_cli_parameters([("d", "2024-01-02")]) == {"d": "2024-01-02"}  # not a date object
    with pytest.raises(ConfigError):
        parse_cli_parameters(None, tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError):
        parse_cli_parameters(None, tmp_path / "list.yaml")
    with pytest.raises(ConfigError):
        parse_cli_parameters([("not-a-name", "1")])


def test_db_option_reaches_only_notebooks_with_a_db_path_parameter():
    mini = NOTEBOOKS / "experiment_mini.ipynb"
    assert with_database(mini, {"seed": 1}, "x.duckdb") == {"seed": 1, "db_path": "x.duckdb"}
    assert with_database(mini, {"db_path": "mine.duckdb"}, "x.duckdb") == {"db_path": "mine.duckdb"}
    assert with_database(FIXTURE, {"seed": 1}, "x.duckdb") == {"seed": 1}  # no db_path parameter
    assert with_database(mini, {}, None) == {}


def test_cli_report_runs_and_fails_with_the_cell_named(tmp_path):
    parser = argparse.ArgumentParser()
    configure_report_parser(parser)
    args = parser.parse_args([str(BROKEN), "-p", "divisor", "5", "--output-dir", str(tmp_path), "--name", "cli"])
    assert args.parameter == [["divisor", "5"]]
    with pytest.raises(ReportError, match=r"divisor=5"):
        args.func(args)
    assert (tmp_path / "cli.html").is_file() and (tmp_path / "cli.ipynb").is_file()


def test_example_report_matches_notebook_structure(tmp_path):
    result = regenerate_example_report(FIXTURE, output_dir=tmp_path, parameters={"epochs": 1})
    assert result.html_path == tmp_path / f"{EXAMPLE_REPORT_NAME}.html"
    assert not (tmp_path / f"{EXAMPLE_REPORT_NAME}.ipynb").exists()
    structure = html_structure(result.html_path)
    assert structure == notebook_structure(FIXTURE)
    assert structure.headings == ("Fixture report", "Learning curve", "Metrics", "Run manifest")
    assert "an output heading" in result.html_path.read_text()  # shown, yet not structure
    assert notebook_structure(BROKEN).differences(structure)  # a different notebook does not match


def test_committed_example_report_matches_the_experiment_notebook():
    notebook = ROOT / EXPERIMENT_NOTEBOOK
    html = ROOT / EXAMPLE_DIR / f"{EXAMPLE_REPORT_NAME}.html"
    if not notebook.is_file() or not html.is_file():
        pytest.skip("notebooks/02_experiment.ipynb or its committed example report is not there yet")
    problems = notebook_structure(notebook).differences(html_structure(html))
    assert not problems, "regenerate with `ett report --example`: " + "; ".join(problems)
    page = parse_page(html)
    assert any(src.startswith("data:image/png;base64,") for src in page.images)
    assert page.tables


def test_parse_value_is_json_or_the_text_for_report_and_run():
    from ettlib.cli import parse_overrides
    from ettlib.reports import parse_value

    cases = {"3": 3, "-2.5": -2.5, "1e-3": 0.001, "true": True, "False": False, "null": None, "None": None,
             '["ETH/USDT"]': ["ETH/USDT"], '{"d": 1}': {"d": 1}, "007": "007", "yes": "yes", "on": "on",
             "2024-01-02": "2024-01-02", "[a, b]": "[a, b]", "NaN": "NaN", "ETH/USDT": "ETH/USDT"}
    for text, value in cases.items():
        assert parse_value(text) == value and type(parse_value(text)) is type(value), text
    # ett run -p KEY=VALUE reads values the same way
    assert parse_overrides([f"k{i}={t}" for i, t in enumerate(cases)]) == {
        f"k{i}": v for i, v in enumerate(cases.values())}


def test_generic_annotations_decide_the_type():
    check_parameter_type("symbols", ["A/B"], annotation="list")
    check_parameter_type("symbols", ("A/B",), annotation="list[str]")
    check_parameter_type("end", "2024-01-01", annotation="Union[str, int, None]")
    check_parameter_type("end", None, annotation="Optional[int]")
    for annotation in ("list", "list[str]", "List[str]"):
        with pytest.raises(ConfigError, match="'symbols' expects"):
            check_parameter_type("symbols", "ETH/USDT", annotation=annotation)
    with pytest.raises(ConfigError):
        check_parameter_type("end", 1.5, annotation="Optional[int]")


def test_cli_output_names_the_file_and_shows_progress(tmp_path, capfd):
    parser = argparse.ArgumentParser()
    configure_report_parser(parser)
    target = tmp_path / "out" / "mine.html"
    args = parser.parse_args([str(FIXTURE), "-p", "epochs", "1", "--output", str(target)])
    assert args.func(args) == 0
    assert target.is_file() and (tmp_path / "out" / "mine.ipynb").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mine.html", "mine.ipynb"]
    cells = len(nbformat.read(str(tmp_path / "out" / "mine.ipynb"), as_version=4).cells)
    captured = capfd.readouterr()
    assert f"{cells}/{cells}" in captured.err  # papermill's bar: cells done out of the total
    assert captured.out.strip() == str(target)


def test_experiment_report_with_code_hidden_has_every_section(tmp_path):
    """The real experiment notebook, tiny, through run_report: every section, recomputed from the store."""
    from html import unescape

    from ettlib.notebooks.experiment import evaluate_run
    from ettlib.notebooks.report_tables import DEMO_BANNER
    from ettlib.notebooks.tools import ensure_demo_data

    notebook = ROOT / EXPERIMENT_NOTEBOOK
    db = tmp_path / "ett.duckdb"
    ensure_demo_data(db, days=0.25)
    params = {"db_path": str(db), "adapter": "river", "baselines": ["persistence"], "context_length": 16,
              "bootstrap_reps": 100, "fee_bps": 2.5}
    result = run_report(notebook, params, output_dir=tmp_path / "out", cwd=ROOT)
    with reading_runs(db) as con:
        run_id, fingerprint, dirty, environment = con.execute(
            "SELECT run_id, data_fingerprint, git_dirty, environment FROM runs").fetchone()
    # named after the run, titled with the run and the symbols
    assert result.run_id == run_id and result.html_path == tmp_path / "out" / f"02_experiment-{run_id}.html"
    html = result.html_path.read_text(encoding="utf-8")
    assert f"<title>Experiment {run_id}: ETH/USDT</title>" in html
    assert notebook_structure(notebook).differences(html_structure(result.html_path)) == []
    page = parse_page(result.html_path)
    text = unescape(" ".join(" ".join(page.text).split()))
    # the verdict is the one the stored predictions give (same bootstrap seed and replications)
    evaluation = evaluate_run(db, run_id, timeframe="1m", reps=100, seed=0, fee_bps=2.5)
    assert evaluation.verdict.text in text
    assert DEMO_BANNER in text  # the demo candles are said to be synthetic

    def rows_of(header):  # the table with a column named ``header``: {first cell: the other cells}
        table = next(t for t in page.tables if any(header in row for row in t[:2]))
        return {row[0]: row[1:] for row in table if row}

    headline = rows_of("best baseline")
    mae = evaluation.comparison.metrics["mae_close"]
    assert headline["close MAE"][2] == f"{mae.values['model'].low:#.4g} to {mae.values['model'].high:#.4g}"
    assert headline["close MAE"][-1] == str(evaluation.verdict.headlines[0].outcome)
    # parameters (shown with the code hidden), data, manifest
    parameters = rows_of("what it does")
    assert parameters["bootstrap_reps"][:3] == ["100", "1000", "yes"] and parameters["adapter"][0] == "river"
    data = rows_of("missing candles (gaps)")["ETH/USDT"]
    assert "2024-01-01T00:00:00Z" in data and "360" in data and "synthetic demo set (seed 7)" in data
    assert fingerprint in data
    manifest = rows_of("field")
    assert manifest["data fingerprint"] == [fingerprint] and manifest["run id"] == [run_id]
    assert manifest["git tree"] == ["dirty (uncommitted changes)" if dirty else "clean"]
    assert len(manifest["git commit"][0]) == 40 and isinstance(dirty, bool)
    versions = json.loads(environment)
    for package in ("python", "torch", "river", "duckdb", "numpy"):
        assert manifest[f"{package} version"] == [versions[package]]
    # the trading diagnostic is labelled as one, the figures are there
    assert "a diagnostic of the predictions, not a strategy backtest" in text.lower()
    assert len([src for src in page.images if src.startswith("data:image/png;base64,")]) >= 5
