// deploy/aws: what the IAM documents of iam.yaml allow, through the IAM evaluator. The JSON
// files are the template's documents resolved for the example parameters (tests/deploy checks
// that they are equal to the template).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ACCOUNT, simulate } from './evaluator.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const doc = (name) => JSON.parse(readFileSync(join(root, 'deploy', 'aws', `${name}.json`), 'utf8'));

const READ_ONLY_ROLE = `arn:aws:iam::${ACCOUNT}:role/stsvend-read`;
const SERVICE_SESSION = `arn:aws:sts::${ACCOUNT}:assumed-role/stsvend-service/pod-1`;
const servicePolicy = doc('service-role-policy');
const readOnlyPolicy = doc('read-only-role-policy');
const readOnlyTrust = doc('read-only-role-trust');
// The second archive's role, made in its own account by archive-role.yaml.
const SECOND_ACCOUNT = '210987654321';
const SECOND_ROLE = `arn:aws:iam::${SECOND_ACCOUNT}:role/stsvend-read`;
const archiveTrust = doc('archive-role-trust');
const archivePolicy = doc('archive-role-policy');

function decide({ principal, action, resource, account = ACCOUNT, identity, resourcePolicy, context = {} }) {
  return simulate({ principal, action, resource, account, context, identity: [identity], resourcePolicy });
}

test('the service role can assume the read-only role, naming the user and tagging the session', async () => {
  for (const action of ['sts:AssumeRole', 'sts:SetSourceIdentity', 'sts:TagSession']) {
    assert.equal(await decide({
      principal: SERVICE_SESSION, action, resource: READ_ONLY_ROLE,
      identity: servicePolicy, resourcePolicy: readOnlyTrust,
    }), 'Allowed', action);
  }
});

test('the service role cannot assume any other role, here or in another account', async () => {
  for (const role of [`arn:aws:iam::${ACCOUNT}:role/admin`, `arn:aws:iam::${ACCOUNT}:role/stsvend-read-write`,
    'arn:aws:iam::210987654321:role/admin', 'arn:aws:iam::999999999999:role/stsvend-read']) {
    assert.equal(await decide({
      principal: SERVICE_SESSION, action: 'sts:AssumeRole', resource: role, identity: servicePolicy,
      account: role.split(':')[4],
    }), 'ImplicitlyDenied', role);
  }
});

test('the service role cannot read S3 or touch IAM itself', async () => {
  const cases = [
    ['s3:GetObject', 'arn:aws:s3:::example-archive-protected/granule.nc'],
    ['s3:ListBucket', 'arn:aws:s3:::example-archive-protected'],
    ['iam:CreateUser', `arn:aws:iam::${ACCOUNT}:user/mallory`],
    ['iam:PutRolePolicy', READ_ONLY_ROLE],
    ['iam:UpdateAssumeRolePolicy', READ_ONLY_ROLE],
    ['sts:AssumeRoleWithWebIdentity', READ_ONLY_ROLE],
  ];
  for (const [action, resource] of cases) {
    assert.equal(await decide({ principal: SERVICE_SESSION, action, resource, identity: servicePolicy }),
      'ImplicitlyDenied', `${action} ${resource}`);
  }
});

test("the read-only role's trust admits the service role and nobody else", async () => {
  const anything = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Resource: '*' }] };
  assert.equal(await decide({
    principal: 'arn:aws:sts::210987654321:assumed-role/stsvend-service/pod-1', action: 'sts:AssumeRole',
    resource: READ_ONLY_ROLE, identity: anything, resourcePolicy: readOnlyTrust,
  }), 'ImplicitlyDenied', 'a role of the same name in another account');
  // The repository's trust, against principals of the same account whose own policies allow
  // anything: only the service role gets in.
  for (const principal of [
    `arn:aws:sts::${ACCOUNT}:assumed-role/stsvend-read/alice@stsvend`, // a vended session chaining
    `arn:aws:iam::${ACCOUNT}:user/mallory`,
    `arn:aws:sts::${ACCOUNT}:assumed-role/stsvend-service-copy/pod-1`,
  ]) {
    assert.equal(await decide({
      principal, action: 'sts:AssumeRole', resource: READ_ONLY_ROLE, identity: anything, resourcePolicy: readOnlyTrust,
    }), 'ImplicitlyDenied', principal);
  }
  assert.equal(await decide({
    principal: SERVICE_SESSION, action: 'sts:AssumeRole', resource: READ_ONLY_ROLE,
    identity: servicePolicy, resourcePolicy: readOnlyTrust,
  }), 'Allowed', 'the service role through the same trust');
});

test('the read-only role reads the archive buckets and nothing else', async () => {
  const session = `arn:aws:sts::${ACCOUNT}:assumed-role/stsvend-read/alice@stsvend`;
  const allowed = [
    ['s3:GetObject', 'arn:aws:s3:::example-archive-protected/a/b.nc'],
    ['s3:GetObject', 'arn:aws:s3:::example-archive-public/granules/x.tif'],
    ['s3:ListBucket', 'arn:aws:s3:::example-archive-public'],
    ['s3:GetBucketLocation', 'arn:aws:s3:::example-archive-protected'],
  ];
  for (const [action, resource] of allowed) {
    assert.equal(await decide({ principal: session, action, resource, identity: readOnlyPolicy }), 'Allowed', `${action} ${resource}`);
  }
  const denied = [
    ['s3:PutObject', 'arn:aws:s3:::example-archive-protected/a/b.nc'],
    ['s3:DeleteObject', 'arn:aws:s3:::example-archive-public/granules/x.tif'],
    ['s3:GetObject', 'arn:aws:s3:::example-archive-protected-logs/x'],
    ['s3:PutBucketPolicy', 'arn:aws:s3:::example-archive-public'],
    ['s3:ListAllMyBuckets', '*'],
    ['sts:AssumeRole', READ_ONLY_ROLE],
  ];
  for (const [action, resource] of denied) {
    assert.equal(await decide({ principal: session, action, resource, identity: readOnlyPolicy }), 'ImplicitlyDenied', `${action} ${resource}`);
  }
});

test("another account's archive role admits stsvend's service role with the archive's external id only", async () => {
  const assume = (principal, identity, context) => decide({
    principal, action: 'sts:AssumeRole', resource: SECOND_ROLE, account: SECOND_ACCOUNT,
    identity, resourcePolicy: archiveTrust, context,
  });
  const withId = { 'sts:ExternalId': 'stsvend-example-archive' };
  // Both sides allow it: stsvend's service role policy names the role, the role trusts it.
  for (const action of ['sts:AssumeRole', 'sts:SetSourceIdentity', 'sts:TagSession']) {
    assert.equal(await decide({
      principal: SERVICE_SESSION, action, resource: SECOND_ROLE, account: SECOND_ACCOUNT,
      identity: servicePolicy, resourcePolicy: archiveTrust, context: withId,
    }), 'Allowed', action);
  }
  assert.notEqual(await assume(SERVICE_SESSION, servicePolicy, {}), 'Allowed', 'without the external id');
  // Naming and tagging the session are allowed only to the same principal, and act only in
  // an AssumeRole that passed the external id.
  assert.notEqual(await decide({
    principal: 'arn:aws:sts::999999999999:assumed-role/stsvend-service/pod-1', action: 'sts:TagSession',
    resource: SECOND_ROLE, account: SECOND_ACCOUNT, identity: servicePolicy, resourcePolicy: archiveTrust,
  }), 'Allowed', 'another principal tagging');
  assert.notEqual(await assume(SERVICE_SESSION, servicePolicy, { 'sts:ExternalId': 'guess' }), 'Allowed', 'a wrong external id');
  // Anyone else, even allowed everything by their own account and holding the id: refused.
  const anything = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Resource: '*' }] };
  for (const principal of [
    `arn:aws:sts::${ACCOUNT}:assumed-role/stsvend-read/alice@stsvend`,
    `arn:aws:sts::${ACCOUNT}:assumed-role/other-app/pod-1`,
    'arn:aws:sts::999999999999:assumed-role/stsvend-service/pod-1',
  ]) {
    assert.notEqual(await assume(principal, anything, withId), 'Allowed', principal);
  }
});

test("the archive role reads its archive's buckets and nothing else", async () => {
  const session = `arn:aws:sts::${SECOND_ACCOUNT}:assumed-role/stsvend-read/alice@stsvend`;
  const verdict = (action, resource) => decide({ principal: session, action, resource, account: SECOND_ACCOUNT, identity: archivePolicy });
  assert.equal(await verdict('s3:GetObject', 'arn:aws:s3:::example-second-archive/a/b.nc'), 'Allowed');
  assert.equal(await verdict('s3:ListBucket', 'arn:aws:s3:::example-second-archive'), 'Allowed');
  for (const [action, resource] of [
    ['s3:PutObject', 'arn:aws:s3:::example-second-archive/a/b.nc'],
    ['s3:GetObject', 'arn:aws:s3:::example-archive-protected/a/b.nc'],
    ['sts:AssumeRole', READ_ONLY_ROLE],
  ]) {
    assert.equal(await verdict(action, resource), 'ImplicitlyDenied', `${action} ${resource}`);
  }
});
