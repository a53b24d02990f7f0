"""Run moto in server mode on loopback and seed it with stsvend's demo archives: the main
one's buckets and role in account 123456789012, and a second archive's in 210987654321.

Used by deploy/local/up.sh and by the integration tests. Prints one JSON line
{"event": "ready", ...} on stdout once seeded, then serves until killed or until the
process named by --parent-pid is gone (so test runs never leave it behind).
"""

import argparse
import json
import os
import sys
import time

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

ACCOUNT = "123456789012"
ROLE_NAME = "stsvend-read"
BUCKETS = {
    "demo-inregion": "us-west-2",
    "demo-restricted": "us-west-2",
    "demo-elsewhere": "us-east-1",
}

# The second archive lives in another account: its own role (trusting the first account,
# with an external id) and its own buckets, one of them requester-pays.
SECOND_ACCOUNT = "210987654321"
SECOND_EXTERNAL_ID = "stsvend-local"
SECOND_BUCKETS = {
    "demo-second": "us-west-2",
    "demo-second-rp": "us-west-2",
}
# demo-second-rp is requester-pays in stsvend's configuration (its links and recipes send
# the option); moto neither stores nor enforces that for a bucket outside us-east-1.

TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
        }
    ],
}


def client(service, endpoint, region="us-east-1", account=None):
    c = boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )
    if account:
        # moto serves several accounts; a header says which one a request is for.
        def in_account(request, **_):
            request.headers["x-moto-account-id"] = account

        c.meta.events.register("before-sign.*.*", in_account)
    return c


def role_policy(buckets):
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": [f"arn:aws:s3:::{b}" for b in buckets]
                + [f"arn:aws:s3:::{b}/*" for b in buckets],
            }
        ],
    }


# The role stsvend assumes: read-only on every demo bucket. Session policies narrow it per user.
ROLE_POLICY = role_policy(BUCKETS)


def seed_second(endpoint):
    for bucket, region in SECOND_BUCKETS.items():
        s3 = client("s3", endpoint, region, SECOND_ACCOUNT)
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        s3.put_object(
            Bucket=bucket,
            Key="hello.txt",
            Body=f"hello from {bucket} ({region}, account {SECOND_ACCOUNT})\n".encode(),
        )
    iam = client("iam", endpoint, account=SECOND_ACCOUNT)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
                "Condition": {"StringEquals": {"sts:ExternalId": SECOND_EXTERNAL_ID}},
            }
        ],
    }
    iam.create_role(
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(trust),
        MaxSessionDuration=43200,
    )
    iam.put_role_policy(
        RoleName=ROLE_NAME,
        PolicyName="read-second",
        PolicyDocument=json.dumps(role_policy(SECOND_BUCKETS)),
    )


def seed(endpoint):
    for bucket, region in BUCKETS.items():
        s3 = client("s3", endpoint, region)
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
            )
        s3.put_object(
            Bucket=bucket,
            Key="hello.txt",
            Body=f"hello from {bucket} ({region})\n".encode(),
        )
    iam = client("iam", endpoint)
    iam.create_role(
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
        MaxSessionDuration=43200,
    )
    iam.put_role_policy(
        RoleName=ROLE_NAME, PolicyName="read-demo", PolicyDocument=json.dumps(ROLE_POLICY)
    )


def parent_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9500)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--no-seed", action="store_true")
    args = parser.parse_args()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{args.port}"
    if not args.no_seed:
        seed(endpoint)
        seed_second(endpoint)
    print(
        json.dumps(
            {
                "event": "ready",
                "component": "moto",
                "endpoint": endpoint,
                "role_arn": f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}",
                "buckets": BUCKETS,
                "second_role_arn": f"arn:aws:iam::{SECOND_ACCOUNT}:role/{ROLE_NAME}",
                "second_buckets": SECOND_BUCKETS,
            }
        ),
        flush=True,
    )
    try:
        while args.parent_pid <= 0 or parent_alive(args.parent_pid):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
