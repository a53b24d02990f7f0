"""The IAM policy documents of deploy/aws/iam.yaml and archive-role.yaml, resolved for example
parameter values (a deployment with a second archive in account 210987654321).

    iam_documents.py --check deploy/aws   # each deploy/aws/<name>.json equals the template's
    iam_documents.py --write deploy/aws   # regenerate them

The template is parsed by cfn-lint's own loader; the few intrinsic functions it uses (Ref,
Fn::Sub, Fn::Join, Fn::Split, Fn::If, Fn::Equals, Fn::GetAtt of a role's Arn) are resolved
here with the account 123456789012 and an example EKS OIDC provider.
"""
import argparse
import json
import re
import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "aws" / "iam.yaml"
ARCHIVE_TEMPLATE = ROOT / "deploy" / "aws" / "archive-role.yaml"
SECOND_ACCOUNT = "210987654321"
PSEUDO = {"AWS::AccountId": "123456789012", "AWS::Partition": "aws", "AWS::Region": "us-west-2"}
EXAMPLE = {
    "EksOidcProvider": "oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
    "OtherArchiveRoleArns": f"arn:aws:iam::{SECOND_ACCOUNT}:role/stsvend-read",
}


class Resolver:
    def __init__(self, template, overrides, account=None):
        self.t = template
        self.account = account or PSEUDO["AWS::AccountId"]
        self.params = {k: v.get("Default") for k, v in template["Parameters"].items()}
        self.params.update(overrides)
        for k, v in template["Parameters"].items():
            if v["Type"] == "CommaDelimitedList" and isinstance(self.params[k], str):
                self.params[k] = self.params[k].split(",")

    def ref(self, name):
        if name == "AWS::AccountId":
            return self.account
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        resource = self.t["Resources"][name]
        if resource["Type"] == "AWS::IAM::Role":
            return self.value(resource["Properties"]["RoleName"])
        raise KeyError(f"Ref {name}")

    def condition(self, name):
        return self.value(self.t["Conditions"][name])

    def value(self, node):
        if isinstance(node, list):
            return [self.value(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                extra = {k: self.value(v) for k, v in extra.items()}
                return re.sub(r"\$\{([\w:.]+)\}",
                              lambda m: str(extra[m[1]] if m[1] in extra else self.ref(m[1])), text)
            if fn == "Fn::Join":
                return arg[0].join(self.value(arg[1]))
            if fn == "Fn::Split":
                return self.value(arg[1]).split(arg[0])
            if fn == "Fn::Equals":
                return self.value(arg[0]) == self.value(arg[1])
            if fn == "Fn::Not":
                return not self.value(arg[0])
            if fn == "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == "Fn::GetAtt":
                name, attr = arg if isinstance(arg, list) else arg.split(".")
                assert attr == "Arn" and self.t["Resources"][name]["Type"] == "AWS::IAM::Role"
                return f"arn:aws:iam::{self.account}:role/{self.ref(name)}"
        return {k: self.value(v) for k, v in node.items()}


def documents():
    template, matches = decode(str(TEMPLATE))
    if matches:
        sys.exit(f"{TEMPLATE}: {matches}")
    res = template["Resources"]
    docs = {}
    for runs_on in ("eks", "ec2"):
        r = Resolver(template, {**EXAMPLE, "ServiceRunsOn": runs_on})
        trust = r.value(res["ServiceRole"]["Properties"]["AssumeRolePolicyDocument"])
        docs[f"service-role-trust-{runs_on}"] = json.loads(trust) if isinstance(trust, str) else trust
    r = Resolver(template, EXAMPLE)
    read_only = r.value(res["ReadOnlyRole"]["Properties"])
    docs["read-only-role-trust"] = read_only["AssumeRolePolicyDocument"]
    (policy,) = read_only["Policies"]
    docs["read-only-role-policy"] = policy["PolicyDocument"]
    docs["service-role-policy"] = r.value(res["ServiceRolePolicy"]["Properties"]["PolicyDocument"])
    # The second archive's role, made in its own account.
    archive, matches = decode(str(ARCHIVE_TEMPLATE))
    if matches:
        sys.exit(f"{ARCHIVE_TEMPLATE}: {matches}")
    r = Resolver(archive, {}, account=SECOND_ACCOUNT)
    role = r.value(archive["Resources"]["ArchiveReadOnlyRole"]["Properties"])
    docs["archive-role-trust"] = role["AssumeRolePolicyDocument"]
    (policy,) = role["Policies"]
    docs["archive-role-policy"] = policy["PolicyDocument"]
    return docs


def main():
    p = argparse.ArgumentParser()
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--check", type=Path)
    g.add_argument("--write", type=Path)
    a = p.parse_args()
    failed = False
    for name, doc in documents().items():
        if a.write:
            (a.write / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
            continue
        path = a.check / f"{name}.json"
        have = json.loads(path.read_text()) if path.exists() else None
        if have != doc:
            print(f"{path} differs from {TEMPLATE.name}; regenerate with --write", file=sys.stderr)
            failed = True
        else:
            print(f"ok {path.name} matches the template")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
