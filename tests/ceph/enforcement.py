"""What vended credentials can and cannot do, proven on Ceph RGW (which enforces session
policies, unlike moto).

  enforcement.py seed    -- as the broker user: create the role (s3:* on everything) and the
                            demo buckets with hello.txt
  enforcement.py check   -- fetch credentials from stsvend for the demo users and try every
                            operation; prints one line per check and "N passed, N failed"

Environment: RGW_ENDPOINT, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (the broker), and for
`check` STSVEND_URL and IDP_ISSUER.
"""

import json
import os
import sys
import urllib.parse
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

REGION = "us-west-2"
ROLE = "stsvend-read"
BUCKETS = ["demo-inregion", "demo-restricted"]
# The second archive: its own role (tests/ceph/run.sh points the archive at it) and buckets,
# one of them requester-pays.
SECOND_ROLE = "stsvend-read-second"
SECOND_BUCKETS = ["demo-second", "demo-second-rp"]
# Readable by `science` under public/ only (tests/ceph/run.sh adds it to the configuration).
PREFIXED = "demo-prefixed"
LINK_KEYS = ["links/with space.txt", "links/plus+sign.txt", "links/100%.txt", "links/é ü 雪.txt"]


def client(service, **creds):
    return boto3.client(
        service,
        endpoint_url=os.environ["RGW_ENDPOINT"],
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        **creds,
    )


def seed():
    iam = client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["arn:aws:iam:::user/broker"]},
                "Action": ["sts:AssumeRole"],
            }
        ],
    }
    # Ceph rejects policies with spaces: send compact JSON.
    allow_all = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::*"]}],
    }
    # Both roles may do anything: what a session may do is the session policy's doing.
    for role in (ROLE, SECOND_ROLE):
        iam.create_role(
            RoleName=role,
            AssumeRolePolicyDocument=json.dumps(trust, separators=(",", ":")),
            MaxSessionDuration=43200,
        )
        iam.put_role_policy(
            RoleName=role, PolicyName="all-s3", PolicyDocument=json.dumps(allow_all, separators=(",", ":"))
        )
    s3 = client("s3")
    for bucket in SECOND_BUCKETS:
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="hello.txt", Body=f"hello from {bucket}\n".encode())
    s3.put_bucket_request_payment(Bucket="demo-second-rp", RequestPaymentConfiguration={"Payer": "Requester"})
    for bucket in BUCKETS:
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="hello.txt", Body=f"hello from {bucket}\n".encode())
    # For a credential narrowed to demo-inregion/p1/.
    for key in ("p1/x.txt", "p2/y.txt"):
        s3.put_object(Bucket="demo-inregion", Key=key, Body=key.encode())
    s3.create_bucket(Bucket=PREFIXED)
    for key in ("public/a.txt", "private/b.txt"):
        s3.put_object(Bucket=PREFIXED, Key=key, Body=key.encode())
    # Keys whose links must be encoded exactly as Ceph checks the signature.
    for key in LINK_KEYS:
        s3.put_object(Bucket="demo-inregion", Key=key, Body=key.encode())
    print(json.dumps({"role_arn": f"arn:aws:iam:::role/{ROLE}", "buckets": BUCKETS}))


def http_json(url, headers=None, data=None):
    req = urllib.request.Request(url, headers=headers or {}, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=20) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, json.loads(body) if body else None


def token(user, password):
    import base64

    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    status, body = http_json(
        f"{os.environ['IDP_ISSUER']}/api/users/find_or_create_token",
        headers={"Authorization": f"Basic {basic}"},
        data=b"",
    )
    assert status == 200, (status, body)
    return body["access_token"]


def credentials(user, password, query="", path="/s3credentials"):
    status, body = http_json(
        f"{os.environ['STSVEND_URL']}{path}{query}",
        headers={"Authorization": f"Bearer {token(user, password)}", "Accept": "application/json"},
    )
    return status, body


def s3_for(creds, tamper=False):
    session_token = creds["sessionToken"]
    if tamper:
        session_token = session_token[:-6] + ("AAAAAA" if not session_token.endswith("AAAAAA") else "BBBBBB")
    return client(
        "s3",
        aws_access_key_id=creds["accessKeyId"],
        aws_secret_access_key=creds["secretAccessKey"],
        aws_session_token=session_token,
    )


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def link(user, password, path, method="GET"):
    """GET (or HEAD) stsvend's /s3/<bucket>/<key> as `user`: (status, Location). `path` is
    percent-encoded here, as a browser or curl sends it."""
    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(
        f"{os.environ['STSVEND_URL']}/s3/{urllib.parse.quote(path)}",
        headers={"Authorization": f"Bearer {token(user, password)}"},
        method=method,
    )
    try:
        with opener.open(req, timeout=20) as res:
            return res.status, res.headers.get("Location")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location")


def fetch(url, method="GET"):
    """GET (or HEAD) a URL with no credentials at all: (status, body; for HEAD the length)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=20) as res:
            body = res.read()
            return res.status, (res.headers.get("Content-Length") if method == "HEAD" else body)
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def expect(self, name, allowed, fn):
        try:
            fn()
            outcome = "allowed"
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            outcome = "denied" if status == 403 or code == "AccessDenied" else f"error {status} {code}"
        want = "allowed" if allowed else "denied"
        ok = outcome == want
        self.passed += ok
        self.failed += not ok
        print(f"{'ok' if ok else 'FAIL'}: {name}: {outcome} (expected {want})", flush=True)

    def equal(self, name, got, want):
        ok = got == want
        self.passed += ok
        self.failed += not ok
        print(f"{'ok' if ok else 'FAIL'}: {name}: {got!r} (expected {want!r})", flush=True)


def check():
    c = Checks()
    status, alice = credentials("alice", "alice-pw")
    c.equal("alice gets credentials", status, 200)
    s3 = s3_for(alice)
    c.expect("alice GET demo-inregion/hello.txt", True,
             lambda: s3.get_object(Bucket="demo-inregion", Key="hello.txt")["Body"].read())
    c.expect("alice LIST demo-inregion", True, lambda: s3.list_objects_v2(Bucket="demo-inregion"))
    c.expect("alice PUT demo-inregion", False,
             lambda: s3.put_object(Bucket="demo-inregion", Key="new.txt", Body=b"x"))
    c.expect("alice DELETE demo-inregion/hello.txt", False,
             lambda: s3.delete_object(Bucket="demo-inregion", Key="hello.txt"))
    c.expect("alice GET demo-restricted/hello.txt", False,
             lambda: s3.get_object(Bucket="demo-restricted", Key="hello.txt")["Body"].read())
    c.expect("alice LIST demo-restricted", False, lambda: s3.list_objects_v2(Bucket="demo-restricted"))
    c.expect("alice PUT demo-restricted", False,
             lambda: s3.put_object(Bucket="demo-restricted", Key="new.txt", Body=b"x"))
    c.expect("alice DELETE demo-restricted/hello.txt", False,
             lambda: s3.delete_object(Bucket="demo-restricted", Key="hello.txt"))
    c.expect("alice CREATE a bucket", False, lambda: s3.create_bucket(Bucket="alice-new-bucket"))
    c.expect("alice GET demo-prefixed/public/a.txt", True,
             lambda: s3.get_object(Bucket=PREFIXED, Key="public/a.txt")["Body"].read())
    c.expect("alice GET demo-prefixed/private/b.txt", False,
             lambda: s3.get_object(Bucket=PREFIXED, Key="private/b.txt")["Body"].read())
    c.expect("alice LIST demo-prefixed under public/", True,
             lambda: s3.list_objects_v2(Bucket=PREFIXED, Prefix="public/"))
    c.expect("alice LIST demo-prefixed under private/", False,
             lambda: s3.list_objects_v2(Bucket=PREFIXED, Prefix="private/"))
    c.expect("alice LIST all of demo-prefixed", False, lambda: s3.list_objects_v2(Bucket=PREFIXED))
    c.expect("alice with a tampered session token", False,
             lambda: s3_for(alice, tamper=True).get_object(Bucket="demo-inregion", Key="hello.txt"))

    # Narrowed to one prefix of one bucket, for 15 minutes: only that, for only that long.
    status, narrow = credentials("alice", "alice-pw", "?target=s3://demo-inregion/p1/&duration_seconds=900")
    c.equal("alice gets a narrowed credential", status, 200)
    import datetime

    left = (datetime.datetime.fromisoformat(narrow["expiration"]) - datetime.datetime.now(datetime.timezone.utc))
    c.equal("the narrowed credential lives 15 minutes", 840 <= left.total_seconds() <= 905, True)
    s3 = s3_for(narrow)
    c.expect("narrowed GET demo-inregion/p1/x.txt", True,
             lambda: s3.get_object(Bucket="demo-inregion", Key="p1/x.txt")["Body"].read())
    c.expect("narrowed GET demo-inregion/p2/y.txt", False,
             lambda: s3.get_object(Bucket="demo-inregion", Key="p2/y.txt")["Body"].read())
    c.expect("narrowed GET demo-inregion/hello.txt", False,
             lambda: s3.get_object(Bucket="demo-inregion", Key="hello.txt")["Body"].read())
    c.expect("narrowed LIST demo-inregion under p1/", True,
             lambda: s3.list_objects_v2(Bucket="demo-inregion", Prefix="p1/"))
    c.expect("narrowed LIST demo-inregion under p2/", False,
             lambda: s3.list_objects_v2(Bucket="demo-inregion", Prefix="p2/"))
    c.expect("narrowed LIST all of demo-inregion", False, lambda: s3.list_objects_v2(Bucket="demo-inregion"))
    c.expect("narrowed GET demo-prefixed/public/a.txt (another bucket)", False,
             lambda: s3.get_object(Bucket=PREFIXED, Key="public/a.txt")["Body"].read())
    c.expect("narrowed PUT demo-inregion/p1/new.txt", False,
             lambda: s3.put_object(Bucket="demo-inregion", Key="p1/new.txt", Body=b"x"))
    status, body = credentials("alice", "alice-pw", "?target=s3://demo-restricted/")
    c.equal("alice narrowing to a bucket she may not read is refused", status, 403)

    # Object links: signed with alice's own session, checked by Ceph when followed.
    status, location = link("alice", "alice-pw", "demo-inregion/hello.txt")
    c.equal("alice's link to demo-inregion/hello.txt is a 307", status, 307)
    c.equal("following it with no credentials reads the object", fetch(location or ""), (200, b"hello from demo-inregion\n"))
    tampered = (location or "").replace("X-Amz-Signature=", "X-Amz-Signature=0")
    c.equal("a link with a tampered signature is refused by Ceph", fetch(tampered)[0], 403)
    c.equal("alice's link outside her prefix is refused by stsvend", link("alice", "alice-pw", "demo-prefixed/private/b.txt"), (403, None))
    # Ceph checks every signature: these prove the signing, not just the redirect.
    status, location = link("alice", "alice-pw", "demo-prefixed/public/a.txt")
    c.equal("alice's link under her allowed prefix reads it", (status, fetch(location or "")), (307, (200, b"public/a.txt")))
    for key in LINK_KEYS:
        status, location = link("alice", "alice-pw", f"demo-inregion/{key}")
        c.equal(f"a link to {key!r} reads exactly that object", (status, fetch(location or "")), (307, (200, key.encode())))
    status, head_location = link("alice", "alice-pw", "demo-inregion/hello.txt", method="HEAD")
    c.equal("a HEAD link is a 307", status, 307)
    c.equal("HEAD through it gives the object's length", fetch(head_location or "", "HEAD"), (200, str(len(b"hello from demo-inregion\n"))))
    c.equal("a HEAD link does not serve a GET", fetch(head_location or "")[0], 403)
    status, get_location = link("alice", "alice-pw", "demo-inregion/hello.txt")
    c.equal("a GET link does not serve a HEAD", fetch(get_location or "", "HEAD")[0], 403)
    # A URL signed by hand with the same session for an object the session may not read: the
    # session policy, not stsvend, is what stops it.
    status, full = credentials("alice", "alice-pw")
    crafted = s3_for(full).generate_presigned_url(
        "get_object", Params={"Bucket": "demo-restricted", "Key": "hello.txt"}, ExpiresIn=300)
    c.equal("a URL crafted with alice's session for demo-restricted is refused by Ceph", fetch(crafted)[0], 403)
    allowed = s3_for(full).generate_presigned_url(
        "get_object", Params={"Bucket": "demo-inregion", "Key": "hello.txt"}, ExpiresIn=300)
    c.equal("(the same crafting for an allowed object works)", fetch(allowed)[0], 200)

    # The second archive: a target there is answered by its role's session, which reads that
    # archive's target and nothing else; its own endpoint's credential reads its buckets only.
    status, second = credentials("alice", "alice-pw", "?target=s3://demo-second/")
    c.equal("alice gets a credential for a target in the second archive", status, 200)
    s3 = s3_for(second)
    c.expect("routed GET demo-second/hello.txt", True,
             lambda: s3.get_object(Bucket="demo-second", Key="hello.txt")["Body"].read())
    c.expect("routed GET demo-second-rp/hello.txt (not asked)", False,
             lambda: s3.get_object(Bucket="demo-second-rp", Key="hello.txt", RequestPayer="requester")["Body"].read())
    c.expect("routed GET demo-inregion/hello.txt (the other archive)", False,
             lambda: s3.get_object(Bucket="demo-inregion", Key="hello.txt")["Body"].read())
    c.expect("routed PUT demo-second", False,
             lambda: s3.put_object(Bucket="demo-second", Key="new.txt", Body=b"x"))
    status, whole = credentials("alice", "alice-pw", "", path="/archives/second/s3credentials")
    c.equal("the second archive's own endpoint answers", status, 200)
    s3 = s3_for(whole)
    c.expect("second archive GET demo-second-rp/hello.txt as requester", True,
             lambda: s3.get_object(Bucket="demo-second-rp", Key="hello.txt", RequestPayer="requester")["Body"].read())
    # (Ceph, like S3, does not make the bucket owner's own sessions pay: a request without
    # the payer would succeed here, so it proves nothing and is not checked.)
    c.expect("second archive GET demo-inregion/hello.txt", False,
             lambda: s3.get_object(Bucket="demo-inregion", Key="hello.txt")["Body"].read())
    c.expect("second archive GET demo-restricted/hello.txt", False,
             lambda: s3.get_object(Bucket="demo-restricted", Key="hello.txt")["Body"].read())
    s3 = s3_for(full)
    c.expect("the main archive's credential GET demo-second/hello.txt", False,
             lambda: s3.get_object(Bucket="demo-second", Key="hello.txt")["Body"].read())
    status, location = link("alice", "alice-pw", "demo-second/hello.txt")
    c.equal("a link into the second archive reads it", (status, fetch(location or "")), (307, (200, b"hello from demo-second\n")))
    status, location = link("alice", "alice-pw", "demo-second-rp/hello.txt")
    c.equal("a link into a requester-pays bucket carries the payer and reads it",
            (status, "x-amz-request-payer=requester" in (location or ""), fetch(location or "")),
            (307, True, (200, b"hello from demo-second-rp\n")))

    status, carol = credentials("carol", "carol-pw")
    c.equal("carol gets credentials", status, 200)
    s3 = s3_for(carol)
    c.expect("carol GET demo-restricted/hello.txt", True,
             lambda: s3.get_object(Bucket="demo-restricted", Key="hello.txt")["Body"].read())
    c.expect("carol LIST demo-restricted", True, lambda: s3.list_objects_v2(Bucket="demo-restricted"))
    c.expect("carol GET demo-inregion/hello.txt", True,
             lambda: s3.get_object(Bucket="demo-inregion", Key="hello.txt")["Body"].read())
    c.expect("carol PUT demo-restricted", False,
             lambda: s3.put_object(Bucket="demo-restricted", Key="new.txt", Body=b"x"))

    status, body = credentials("bob", "bob-pw")
    c.equal("bob is refused", status, 403)
    c.equal("bob's error", (body or {}).get("error"), "access_denied")

    print(f"ceph: {c.passed} passed, {c.failed} failed", flush=True)
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "seed":
        seed()
    elif what == "check":
        sys.exit(check())
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
