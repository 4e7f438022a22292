"""The tutorial notebooks as files: stored from one clean run, with checked cells, small, and sanitizable.

nbval runs the notebooks themselves (``pytest notebooks``); these checks catch what it cannot: a notebook
saved half-executed or with an error, a tutorial with nothing compared, outputs that bloat the repository,
and a sanitizer file that nbval would silently read as fewer patterns than it has.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
SANITIZE = NOTEBOOKS / "sanitize.cfg"
TUTORIALS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
# nbval reads these cell tags (metadata, invisible to a reader) as it reads its "# NBVAL_..." comments.
CHECK_TAG = "nbval-check-output"
# Whole-notebook opt-outs would hide a tutorial from the comparison; single cells may skip (e.g. a mic).
BLANKET_TAGS = ("nbval-ignore-output", "nbval-skip")
NOTEBOOKS_READERS_SEE = [*TUTORIALS, NOTEBOOKS / "microphone_and_player.ipynb"]
MAX_TOTAL_BYTES = 5_000_000
MAX_NOTEBOOK_BYTES = 2_000_000
# nbval's own parser for the sanitize file (nbval.plugin.get_sanitize_patterns).
NBVAL_PAIR = re.compile(r"^regex: (.*)$\n^replace: (.*)$", re.MULTILINE)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _code_cells(path: Path) -> list[dict]:
    return [cell for cell in _cells(path) if cell["cell_type"] == "code"]


def _source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def test_the_tutorials_are_there():
    names = [path.stem for path in TUTORIALS]
    assert names == ["01_quick_start", "02_voice_and_vad", "03_frame_log_analysis", "04_spectrograms",
                     "05_language_switching", "06_errors_and_close_codes", "07_real_service", "08_experiments"]


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_outputs_are_from_one_clean_run_top_to_bottom(path):
    """Stored outputs come from executing the whole notebook in order, with no cell failing."""
    counts = [cell["execution_count"] for cell in _code_cells(path)]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: re-run it top to bottom and save"
    errors = [out for cell in _code_cells(path) for out in cell["outputs"] if out["output_type"] == "error"]
    assert not errors, f"{path.name} was saved with an error: {errors[0].get('ename')}"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_each_tutorial_compares_some_outputs_and_none_is_blanket_ignored(path):
    cells = _code_cells(path)
    checked = [cell for cell in cells if CHECK_TAG in _tags(cell)]
    assert checked, f"{path.name} has no cell tagged {CHECK_TAG!r}"
    assert all(cell["outputs"] for cell in checked), f"{path.name}: a checked cell has no stored output"
    blanket = [tag for tag in BLANKET_TAGS if all(tag in _tags(cell) for cell in cells)]
    assert not blanket, f"{path.name} opts every cell out with {blanket}"


@pytest.mark.parametrize("path", NOTEBOOKS_READERS_SEE, ids=lambda p: p.stem)
def test_readers_see_no_test_markers(path):
    """What nbval needs lives in cell tags; the text a reader sees carries no test machinery."""
    for cell in _cells(path):
        assert "NBVAL" not in _source(cell).upper(), f"{path.name}: a test marker in a cell's text"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_checked_cells_print_no_warnings(path):
    """A warning in a compared cell would make the comparison depend on library versions."""
    for cell in _code_cells(path):
        if CHECK_TAG in _tags(cell):
            streams = [out for out in cell["outputs"] if out["output_type"] == "stream"]
            assert all(out["name"] == "stdout" for out in streams), f"{path.name}: stderr in a checked cell"


def test_stored_outputs_stay_small():
    sizes = {path.name: path.stat().st_size for path in TUTORIALS}
    assert sum(sizes.values()) < MAX_TOTAL_BYTES, sizes
    assert max(sizes.values()) < MAX_NOTEBOOK_BYTES, sizes


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_figures_are_stored_as_json_not_as_a_plotly_bundle(path):
    text = path.read_text(encoding="utf-8")
    assert "plotly.min.js" not in text and "window.PlotlyConfig" not in text, \
        f"{path.name} embeds plotly.js; set plotly.io.renderers.default = 'plotly_mimetype'"


def test_every_sanitizer_pair_is_read_by_nbval_and_compiles():
    text = SANITIZE.read_text(encoding="utf-8")
    pairs = NBVAL_PAIR.findall(text)
    assert len(pairs) == text.count("\nregex: ") + text.startswith("regex: ")
    for regex, _ in pairs:
        re.compile(regex)


@pytest.mark.parametrize("raw, clean", [
    ("<Reply 'Hi.' (4.98 s audio, latency 11 ms)>", "<Reply 'Hi.' (<N> s audio, latency <N> ms)>"),
    ("{'latency_ms': 10.626195999975607}", "{'latency_ms': <N>}"),
    ("conversation=69ab67ee9792982dd40311c8 url=ws://127.0.0.1:38633/v1/demo-org",
     "conversation=<ID> url=ws://127.0.0.1:<PORT>/v1/demo-org"),
    ("log='/tmp/amigo_lab-sessions/20261124T033636Z-a78239'>", "log='<TMP>'>"),
    ("<object at 0x7f3a2b1c4d50>", "<object at 0x<ADDR>>"),
    ("started 2026-11-24T03:34:28.711961+00:00", "started <DATETIME>"),
    ("what are your opening hours (16000 Hz)", "what are your opening hours (16000 Hz)"),
])
def test_sanitizers_hide_what_changes_between_runs_and_keep_the_rest(raw, clean):
    text = raw
    for regex, replace in NBVAL_PAIR.findall(SANITIZE.read_text(encoding="utf-8")):
        text = re.sub(regex, replace, text)
    assert text == clean


def test_plain_pytest_runs_the_notebooks_with_the_sanitizers():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert "notebooks" in options["testpaths"]
    addopts = options["addopts"].split()
    assert {"--nbval-lax", "--nbval-current-env"} <= set(addopts)
    sanitize = addopts[addopts.index("--nbval-sanitize-with") + 1]
    assert (ROOT / sanitize).resolve() == SANITIZE.resolve()
