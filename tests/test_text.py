"""Text the ILS or a person typed, on its way to a terminal, a spreadsheet or the printed
form (the third adversarial review: Koha labels became formula cells and split CSV rows,
a saved report's name wrote the clipboard of the administrator's terminal through OSC 52,
and a NUL byte reached the officer's form)."""

from __future__ import annotations

import csv
import datetime as dt
import io

from ils_redact.cli.gate import _lint_text
from ils_redact.disclosure.forms import _h
from ils_redact.gate.lint import LintRecord
from ils_redact.sdc.results import Entry, ReportInfo, ReportResult
from ils_redact.stats.render import to_csv
from ils_redact.text import UNPRINTABLE, csv_label, escaped

HOSTILE = ("=1+1", "@A1", "+SUM(A1)", "-2+3", "x\r=2+2", "a\x1b]52;c;aGk=\x07b",
           "nul\x00here", "rlm\u200fx", "bom\ufeffx", "tag\U000e0041x", "26-11\u00ad82",
           "Dana\u3164Reyes", "vs\ufe0fx", "ok")


def test_escaped_leaves_nothing_unprintable() -> None:
    for text in HOSTILE:
        out = escaped(text)
        assert not UNPRINTABLE.search(out), (text, out)
    assert escaped("a\x1bb") == "a\\x1bb" and escaped("\u202e") == "\\u202e"


def test_csv_labels_are_text_and_one_line() -> None:
    info = ReportInfo(name="r", title="t", description="d", rows_title="category",
                      cols_title=None, measures=("checkouts",), timed=True, custom=False,
                      k=11, time_zone="UTC")
    entries = [Entry(dt.date(2024, 6, 1), "checkouts", "cell", label, None, 12, False)
               for label in HOSTILE]
    out = to_csv(ReportResult(info, dt.date(2024, 6, 1), dt.date(2024, 7, 1), entries))
    rows = list(csv.reader(io.StringIO(out)))
    assert len(rows) == 1 + len(HOSTILE), out  # no label split a row
    for row in rows[1:]:
        assert not row[3].startswith(("=", "+", "-", "@")), row
        assert not UNPRINTABLE.search(row[3]), row
    assert rows[1][3] == "'=1+1" and rows[-1][3] == "ok"
    assert csv_label("-2+3") == "'-2+3"


def test_lint_output_sends_no_escape_sequence_to_the_terminal() -> None:
    records = [LintRecord(path=f"saved_sql #7 {name}", verdict="usable")
               for name in HOSTILE]
    out = _lint_text(records)
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\x00" not in out
    assert len(out.splitlines()) == len(HOSTILE) + 1


def test_the_printed_form_shows_hidden_characters() -> None:
    assert _h("nul\x00here") == "nul\\x00here"
    assert _h("<b>\u200f</b>") == "&lt;b&gt;\\u200f&lt;/b&gt;"
    assert _h("line one\nline two\tx") == "line one\nline two\tx"  # the reason's lines
