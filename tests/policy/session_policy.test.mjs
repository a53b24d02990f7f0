// AWS policy semantics of the session policies stsvend emits, checked with an IAM evaluator.
// The policies come from the real binary (`stsvend policy`), for the local stack's
// configuration and for one with prefixes and a VPC-endpoint condition. The role is given
// `s3:*` on everything, so whatever is denied is denied by the session policy alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ACCOUNT, simulate } from './evaluator.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = process.env.STSVEND_BIN
  ?? join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'debug', 'stsvend');
const ROLE_POLICY = {
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: '*' }],
};

function policyFor(config, user, groups) {
  const args = ['policy', '--config', config, '--user', user, ...groups.flatMap((g) => ['--group', g])];
  const out = spawnSync(bin, args, { encoding: 'utf8' });
  const scope = out.status === 0 ? JSON.parse(out.stdout) : undefined;
  return { status: out.status, scope, policy: scope && JSON.parse(scope.Policy), stderr: out.stderr };
}

function decide(session, action, resource, context = {}) {
  return simulate({ action, resource, context, identity: [ROLE_POLICY], session });
}

// The evaluator does not validate resources: a non-ARN Resource would match everything.
// Grants name S3 ARNs and read actions only; denials (network conditions) cover everything.
function assertWellFormedArns(policy) {
  for (const statement of policy.Statement) {
    if (statement.Effect === 'Deny') {
      assert.equal(statement.Resource, '*');
      assert.ok(statement.Condition || statement.NotAction, JSON.stringify(statement));
      continue;
    }
    assert.equal(statement.Effect, 'Allow');
    for (const r of [statement.Resource].flat()) {
      assert.match(r, /^arn:aws:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/[^*?]*\*)?$/, r);
    }
    for (const a of [statement.Action].flat()) {
      assert.ok(['s3:GetObject', 's3:ListBucket', 's3:GetBucketLocation'].includes(a), a);
    }
  }
}

const local = join(root, 'config', 'local.toml');
const obj = (bucket, key = 'hello.txt') => `arn:aws:s3:::${bucket}/${key}`;
const bucket = (name) => `arn:aws:s3:::${name}`;
// [action, on a bucket (true) or an object (false)]
const OTHER_ACTIONS = [['s3:PutObject', false], ['s3:DeleteObject', false], ['s3:PutObjectAcl', false],
  ['s3:GetObjectAcl', false], ['s3:GetObjectVersion', false], ['s3:RestoreObject', false],
  ['s3:DeleteBucket', true], ['s3:PutBucketPolicy', true], ['s3:GetBucketPolicy', true],
  ['s3:ListBucketVersions', true], ['s3:ListBucketMultipartUploads', true]];

test('alice (science) may read demo-inregion and nothing else', async () => {
  const { policy } = policyFor(local, 'alice', ['science']);
  assertWellFormedArns(policy);
  assert.equal(await decide(policy, 's3:GetObject', obj('demo-inregion')), 'Allowed');
  assert.equal(await decide(policy, 's3:ListBucket', bucket('demo-inregion')), 'Allowed');
  assert.equal(await decide(policy, 's3:GetBucketLocation', bucket('demo-inregion')), 'Allowed');
  for (const b of ['demo-restricted', 'demo-elsewhere', 'some-other-bucket']) {
    assert.equal(await decide(policy, 's3:GetObject', obj(b)), 'ImplicitlyDenied', b);
    assert.equal(await decide(policy, 's3:ListBucket', bucket(b)), 'ImplicitlyDenied', b);
  }
  for (const [action, onBucket] of OTHER_ACTIONS) {
    const resource = onBucket ? bucket('demo-inregion') : obj('demo-inregion');
    assert.equal(await decide(policy, action, resource), 'ImplicitlyDenied', action);
  }
  assert.equal(await decide(policy, 's3:ListAllMyBuckets', '*'), 'ImplicitlyDenied');
});

test('carol (science, restricted) may also read demo-restricted, never demo-elsewhere', async () => {
  const { policy } = policyFor(local, 'carol', ['science', 'restricted']);
  assertWellFormedArns(policy);
  for (const b of ['demo-inregion', 'demo-restricted']) {
    assert.equal(await decide(policy, 's3:GetObject', obj(b, 'deep/path/file.nc')), 'Allowed', b);
    assert.equal(await decide(policy, 's3:ListBucket', bucket(b)), 'Allowed', b);
    assert.equal(await decide(policy, 's3:PutObject', obj(b)), 'ImplicitlyDenied', b);
    assert.equal(await decide(policy, 's3:DeleteObject', obj(b)), 'ImplicitlyDenied', b);
  }
  assert.equal(await decide(policy, 's3:GetObject', obj('demo-elsewhere')), 'ImplicitlyDenied');
  assert.ok(!JSON.stringify(policy).includes('demo-elsewhere'));
});

test('bob (no groups) gets no policy at all: the service answers 403', () => {
  const { status, stderr } = policyFor(local, 'bob', []);
  assert.equal(status, 1);
  assert.match(stderr, /403/);
});

test('prefixes limit objects and listings; a VPC endpoint condition applies to everything', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stsvend-policy-'));
  const config = join(dir, 'prefixes.toml');
  writeFileSync(config, readFileSync(local, 'utf8')
    .replaceAll('../deploy/local/', join(root, 'deploy', 'local') + '/')
    + `
[[buckets]]
name = "demo-prefixed"
region = "us-west-2"
prefixes = ["public/", "shared/data/"]
groups = ["science"]

[policy]
source_vpce = ["vpce-1a2b3c4d"]
`);
  const { policy, status, stderr } = policyFor(config, 'alice', ['science']);
  assert.equal(status, 0, stderr);
  assertWellFormedArns(policy);
  const vpce = { 'aws:SourceVpce': 'vpce-1a2b3c4d' };
  assert.equal(await decide(policy, 's3:GetObject', obj('demo-prefixed', 'public/a.txt'), vpce), 'Allowed');
  assert.equal(await decide(policy, 's3:GetObject', obj('demo-prefixed', 'shared/data/x/y'), vpce), 'Allowed');
  assert.equal(await decide(policy, 's3:GetObject', obj('demo-prefixed', 'private/a.txt'), vpce), 'ImplicitlyDenied');
  assert.equal(await decide(policy, 's3:GetObject', obj('demo-prefixed', 'shared/other'), vpce), 'ImplicitlyDenied');
  assert.equal(await decide(policy, 's3:ListBucket', bucket('demo-prefixed'), { ...vpce, 's3:prefix': 'public/' }), 'Allowed');
  assert.equal(await decide(policy, 's3:ListBucket', bucket('demo-prefixed'), { ...vpce, 's3:prefix': 'shared/data/2024/' }), 'Allowed');
  assert.equal(await decide(policy, 's3:ListBucket', bucket('demo-prefixed'), { ...vpce, 's3:prefix': 'private/' }), 'ImplicitlyDenied');
  assert.equal(await decide(policy, 's3:ListBucket', bucket('demo-prefixed'), { ...vpce, 's3:prefix': '' }), 'ImplicitlyDenied');
  // The whole-bucket grant still works, through the endpoint only.
  assert.equal(await decide(policy, 's3:GetObject', obj('demo-inregion'), vpce), 'Allowed');
  assert.equal(await decide(policy, 's3:GetObject', obj('demo-inregion'), { 'aws:SourceVpce': 'vpce-99999999' }), 'ExplicitlyDenied');
  assert.equal(await decide(policy, 's3:GetObject', obj('demo-inregion')), 'ExplicitlyDenied');
});

test('the policy is deterministic and compact', () => {
  const a = policyFor(local, 'x', ['science', 'restricted']).scope;
  const b = policyFor(local, 'y', ['restricted', 'science', 'science']).scope;
  assert.equal(a.Policy, b.Policy);
  assert.equal(a.hash, b.hash);
  assert.ok(!/\s/.test(a.Policy), 'no whitespace inside the policy');
  assert.deepEqual(a.limits.policy_characters, [a.Policy.length, 2048]);
  assert.equal(a.mode, 'inline');
});
