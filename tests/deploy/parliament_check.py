"""Lint IAM policy documents with parliament (its library API: the CLI cannot take a file when
stdin is not a terminal, as in CI). Trust policies (*-trust-*.json, *-trust.json) are linted
with the exceptions in parliament-trust.yaml, each justified there.

    parliament_check.py FILE...
"""
import sys
from pathlib import Path

import parliament
from parliament import analyze_policy_string, enhance_finding
from parliament.cli import is_finding_filtered

HERE = Path(__file__).resolve().parent


def findings(path, trust):
    saved = {k: dict(v) for k, v in parliament.config.items()}
    try:
        if trust:
            parliament.override_config(str(HERE / "parliament-trust.yaml"))
        policy = analyze_policy_string(path.read_text(), str(path), config=parliament.config)
        shown = [enhance_finding(f) for f in policy.findings]
        return [f for f in shown if not is_finding_filtered(f, "INFO")]
    finally:
        parliament.config.clear()
        parliament.config.update(saved)


def main():
    failed = False
    for name in sys.argv[1:]:
        path = Path(name)
        trust = "-trust" in path.name
        found = findings(path, trust)
        for f in found:
            print(f"{path}: {f.severity} {f.title}: {f.detail} {f.location}")
        failed |= bool(found)
        if not found:
            print(f"ok {path.name}: parliament found nothing{' (trust-policy rules)' if trust else ''}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
