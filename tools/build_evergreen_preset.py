"""Regenerate the classification part of redaction_rules.yaml from the schema facts.

Usage: python tools/build_evergreen_preset.py CLASSIFICATION_JSON > sections.yaml

The identity, patron and settings sections at the top of redaction_rules.yaml are written
by hand (each choice has a comment); this script writes the long lists below them
(secret, confidential, personal, other) from ``tests/data/classification.json``, so a
new Evergreen release is re-classified by the same rules and reviewed as a diff.
"""

import json
import sys

# Whole relations that hold credentials: no restricted role ever reads them.
SECRET_TABLES = {
    "actor.passwd": "salted password hashes",
    "actor.usr_password_reset": "password-reset tokens",
    "actor.usr_mfa_exception": "MFA exemptions",
    "actor.usr_mfa_factor_map": "enrolled MFA factors",
}
# Credential columns inside other relations.
SECRET_COLUMNS = {
    "acq.edi_account": ["password"],
    "actor.usr": ["passwd"],
    "auditor.actor_usr_history": ["passwd"],
    "auditor.actor_usr_lifecycle": ["passwd"],
    "config.geolocation_service": ["api_key"],
    "config.openathens_identity": ["api_key"],
    "config.remote_account": ["password"],
    "config.z3950_source_credentials": ["password"],
    "openapi.authen_attempt_log": ["token"],
    "openapi.endpoint_access_attempt_log": ["token"],
    "sip.session": ["ils_token"],
    "staging.user_stage": ["passwd"],
    "url_verify.url": ["password"],
}
IDENTITY = {"actor.usr", "actor.card", "actor.usr_address"}
# Where ils-redact's own rule overrides the classification: an inheritance parent of a
# confidential table returns that table's rows, so it is confidential too.
RECLASSIFY = {
    "action.transit_copy": (
        "b",
        "Parent of action.hold_transit_copy and action.reservation_transit_copy: reading it "
        "returns their rows (which item moved to fill a hold, when). Confidential by "
        "inheritance.",
    ),
}


def q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def main(path: str) -> None:
    rows = json.load(open(path, encoding="utf-8"))["evergreen"]
    for r in rows:
        if r["relation"] in RECLASSIFY:
            r["class"], r["why"] = RECLASSIFY[r["relation"]]
    out = []
    out.append("# Credentials: no restricted role ever gets these, the disclosure role included.")
    out.append("secret:")
    for rel, why in sorted(SECRET_TABLES.items()):
        out.append(f"  {rel}: all  # {why}")
    for rel, cols in sorted(SECRET_COLUMNS.items()):
        out.append(f"  {rel}: [{', '.join(cols)}]")
    out.append("")
    out.append("# Class (b), confidential patron activity (75 ILCS 70/1): what a patron borrowed,")
    out.append("# held, searched, listed, requested or paid, and every copy of it (aged rows,")
    out.append("# audit tables, notices, and the views and inheritance parents that read them).")
    out.append("# Never readable by the disclosure role; the statistics role sees it only as")
    out.append("# aggregates over at least k distinct patrons.")
    out.append("confidential:")
    for r in sorted((r for r in rows if r["class"] == "b"), key=lambda r: r["relation"]):
        out.append(f"  {r['relation']}: {q(r['why'])}")
    out.append("")
    out.append("# Class (a) personal data that is not disclosed: staging copies, settings,")
    out.append("# third persons, views over the patron table.  Closed to every restricted role.")
    out.append("personal:")
    for r in sorted((r for r in rows if r["class"] == "a"), key=lambda r: r["relation"]):
        if r["relation"] in IDENTITY or r["relation"] in SECRET_TABLES:
            continue
        out.append(f"  {r['relation']}: {q(r['why'])}")
    out.append("")
    out.append("# Class (c): catalogue, items, acquisitions, serials, configuration.  Reviewed:")
    out.append("# no patron data (person links here point at staff accounts).  Listed so that")
    out.append("# `verify` can report any relation an upgrade adds that nobody has classified.")
    out.append("other:")
    for r in sorted((r for r in rows if r["class"] == "c"), key=lambda r: r["relation"]):
        out.append(f"  - {r['relation']}")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
