"""The whole disclosure story in a real browser, on Evergreen (PostgreSQL) and Koha
(MariaDB): the clerk records an emergency request by barcode and confirms the patrons,
the director approves in another browser, the clerk's own approval is refused, the clerk
exports (the file's sha256 is the manifest's and the audit entry's), reads the readable
document, prints the form and downloads the packet; after revoke the export is refused;
a statistics login sees a report with suppressed cells; an admin sees verify's report."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
import zipfile

from support import run_cli
from support.console import Library

#: a report and months with a tiny branch in them (suppressed cells)
STATS = {"postgresql": ("circ_by_library_modifier", "2023-01", "2023-03"),
         "mariadb": ("circ_by_branch_itemtype", "2024-01", "2024-06")}


def _audit_detail(browser, rid: int, action: str) -> list[dict]:
    browser.open(f"/audit?request={rid}")
    out = []
    for row in browser.finds("table#audit tbody tr"):
        cells = row.find_elements("css selector", "td")
        if cells[3].text == action:
            out.append(json.loads(cells[5].text))
    return out


def _rid(browser) -> int:
    m = re.search(r"/requests/(\d+)$", browser.driver.current_url)
    assert m, browser.driver.current_url
    return int(m.group(1))


def test_the_whole_story_in_a_browser(library: Library, browsers) -> None:
    started = time.perf_counter()
    url, pw = library.url, library.password

    # -- the clerk records an emergency request by barcode and confirms the patrons ------
    clerk = browsers("clerk")
    clerk.login(url, library.clerk, pw)
    assert clerk.text("h1") == "Requests", clerk.text()
    assert clerk.driver.get_cookie(clerk.cookie()["name"])["httpOnly"]
    clerk.shot("01-requests")
    clerk.open("/requests/new")
    clerk.fill("agency", "Metro Police Department")
    clerk.fill("officer_name", "Dana Reyes")
    clerk.fill("officer_badge", "4471")
    clerk.fill("case_number", "26-1182")
    clerk.fill("emergency_reason", "credible threat of violence at the branch")
    clerk.fill("hours", "12")
    clerk.fill("barcodes", "\n".join(library.barcodes[:2]))
    clerk.shot("02-new-request")
    clerk.click("main form button[type=submit]")
    assert clerk.text("h1") == "Are these the people the request names?"
    rows = clerk.finds("table#resolved tbody tr")
    assert [r.find_elements("css selector", "td")[0].text for r in rows] == library.barcodes[:2]
    assert all(r.find_elements("css selector", "td")[2].text for r in rows)  # names shown
    clerk.shot("03-confirm-patrons")
    clerk.click("button[value=create]")
    rid = _rid(clerk)
    assert clerk.text("#status") == "draft"
    assert f"Request {rid} recorded as a draft" in clerk.text(".msg.ok")
    clerk.shot("04-request-draft")

    # -- the clerk's own approval is refused by the database ------------------------------
    clerk.click("#approve")
    assert "cannot approve it (two-person rule)" in clerk.text(".msg.refused")
    assert clerk.text("#status") == "draft"
    clerk.shot("05-self-approval-refused")

    # -- the director approves in another browser -----------------------------------------
    director = browsers("director")
    director.login(url, library.director, pw)
    director.open(f"/requests/{rid}")
    director.click("#approve")
    assert director.text("#status") == "approved"
    assert f"approved by {library.director}" in director.text("table#request").replace(
        "Approved\n", "approved ").replace("Approved ", "approved ")
    director.shot("06-approved-by-director")

    # -- the clerk exports: CSV + manifest, sha256 = manifest's = audit entry's -----------
    clerk.open(f"/requests/{rid}")
    zipped = clerk.click_download("#export-csv")
    assert zipped.name == f"request-{rid}.csv.zip"
    with zipfile.ZipFile(zipped) as z:
        assert sorted(z.namelist()) == [f"request-{rid}.csv", f"request-{rid}.csv.manifest.json"]
        data = z.read(f"request-{rid}.csv")
        manifest = json.loads(z.read(f"request-{rid}.csv.manifest.json"))
    digest = hashlib.sha256(data).hexdigest()
    assert digest == manifest["sha256"]
    records = list(csv.DictReader(io.StringIO(data.decode())))
    assert len({r["patron_id"] for r in records}) == 2 == manifest["patrons"]
    logged = _audit_detail(clerk, rid, "export")
    assert [e["sha256"] for e in logged] == [digest]
    clerk.shot("07-audit-after-export")

    # -- the readable document: one section per patron, labelled fields -------------------
    clerk.open(f"/requests/{rid}")
    clerk.click("#export-document")
    clerk.shot("08-readable-document")
    sections = clerk.finds("section.patron")
    assert len(sections) == 2
    for sec in sections:
        labels = [th.text for th in sec.find_elements("css selector", "table.summary th")]
        assert labels[0] == "Name" and "Date of birth" in labels and "Card" in labels, labels
        assert "Address" in labels, labels
    doc_digest = clerk.text("table.meta code")
    clerk.open(f"/requests/{rid}")
    saved = clerk.click_download("#export-document-download")
    assert saved.name == f"request-{rid}-disclosure.html"
    assert saved.read_text(encoding="utf-8").count('<section class="patron"') == 2
    logged = _audit_detail(clerk, rid, "export")
    assert doc_digest in [e["sha256"] for e in logged] and len(logged) == 3

    # -- the officer's form, printed; the judicial-review packet ---------------------------
    clerk.open(f"/requests/{rid}/form")
    assert clerk.text("h1") == f"Request for patron records #{rid}"
    assert "Dana Reyes, badge 4471" in clerk.text()
    clerk.shot("09-officer-form")
    assert clerk.pdf("09-officer-form").startswith(b"%PDF")
    clerk.open(f"/requests/{rid}")
    packet = clerk.click_download("#packet-link")
    with zipfile.ZipFile(packet) as z:
        names = set(z.namelist())
        assert {f"packet-{rid}/form.html", f"packet-{rid}/audit-verify.json"} <= names
        manifests = [n for n in names if "/manifest-" in n]
        assert digest in {json.loads(z.read(n))["sha256"] for n in manifests}

    # -- the audit log with verify's result and the chain head ------------------------------
    clerk.open("/audit")
    verdict = clerk.text("#verify-result")
    assert verdict.startswith("Chain intact") and re.search(r"head \d+:[0-9a-f]{64}", verdict)
    clerk.shot("10-audit-log")

    # -- after revoke, the export is refused ------------------------------------------------
    director.open(f"/requests/{rid}")
    director.fill("reason", "the officer withdrew the request")
    director.click("#revoke")
    assert director.text("#status") == "revoked"
    clerk.open(f"/requests/{rid}")
    if library.engine == "postgresql":
        # the revoke ended the grantee's database sessions (an open snapshot would keep
        # the old scope), the console's among them: the clerk logs in again
        assert "the database connection was lost" in clerk.text(), clerk.text()
        clerk.login(url, library.clerk, pw)
        clerk.open(f"/requests/{rid}")
    before = clerk.files()
    clerk.click("#export-csv")
    refusal = clerk.text(".msg.refused")
    assert f"export of request {rid} refused" in refusal and "revoked" in refusal, refusal
    assert clerk.files() == before
    clerk.shot("11-export-refused-after-revoke")

    # -- a statistics login: a report with suppressed cells marked, the chart, CSV ----------
    report, since, until = STATS[library.engine]
    # the sysadmin publishes the months first (the statistics role reads published months)
    res = run_cli("--dsn", library.superuser_dsn, "--rules", str(library.rules_path), "stats",
                  "publish", report, "--from", since, "--to", until)
    assert res.returncode == 0, res.stdout + res.stderr
    board = browsers("board")
    board.login(url, library.board, pw)
    assert board.text("h1") == "Statistics"
    board.shot("12-statistics")
    board.open(f"/stats/report?report={report}&from={since}&to={until}")
    board.shot("13-statistics-report")
    suppressed = board.finds("table.stats td.sup")
    assert suppressed and all(td.text == "suppressed" for td in suppressed)
    assert board.finds("table.stats td.num")
    assert board.finds("svg#chart rect.bar")
    lines = board.click_download("#stats-csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "period,measure,kind,row_value,col_value,value,suppressed"
    assert any(line.endswith(",,true") for line in lines)
    board.open("/requests")  # not the board's business: the database says so
    assert board.finds(".msg.refused, .msg.error")
    board.open("/verify")
    assert board.text("h1") == "Not for this login"

    # -- an admin sees verify's report (published by the sysadmin; read only) ---------------
    director.open("/verify")
    assert director.text("#verify-verdict").startswith("All rules hold")
    assert len(director.finds("table#checks tbody tr")) > 10
    director.shot("14-verify-report")

    clerk.logout()
    assert clerk.text("h1") == "Log in"
    print(f"\nbrowser story on {library.engine}: {time.perf_counter() - started:.1f} s")
