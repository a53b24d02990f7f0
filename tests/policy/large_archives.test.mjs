// Large archives: 200 in-region buckets (some with prefixes, some open to everyone) and one
// in another region, scoped in each of the three ways (`policy.mode`). What the real binary
// emits (`stsvend policy`, `managed-policies`, `role-policy`) goes through the IAM evaluator
// for users in various groups: every read the configuration allows is allowed; every other
// bucket, prefix, region and every write is denied.
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
const EVERYTHING = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: '*' }] };

// Bucket i: groups team-(i % 40) and all-(i % 7); every tenth open to everyone; every fifth
// limited to two prefixes.
const buckets = Array.from({ length: 200 }, (_, i) => ({
  name: `archive-bucket-${String(i).padStart(3, '0')}`,
  region: 'us-west-2',
  prefixes: i % 5 === 0 ? [`collection-${String(i).padStart(3, '0')}/`, `browse/${i}/`] : [],
  groups: i % 10 === 0 ? [] : [`team-${String(i % 40).padStart(2, '0')}`, `all-${i % 7}`],
}));
buckets.push({ name: 'archive-elsewhere', region: 'us-east-1', prefixes: [], groups: ['team-01'] });

function configFile(mode) {
  const dir = mkdtempSync(join(tmpdir(), 'stsvend-large-'));
  const head = readFileSync(join(root, 'config', 'local.toml'), 'utf8')
    .split('[[buckets]]')[0]
    .replaceAll('../deploy/local/', join(root, 'deploy', 'local') + '/');
  const body = buckets.map((b) => `[[buckets]]\nname = "${b.name}"\nregion = "${b.region}"\nprefixes = ${JSON.stringify(b.prefixes)}\ngroups = ${JSON.stringify(b.groups)}\n`).join('\n');
  const path = join(dir, `${mode}.toml`);
  writeFileSync(path, `${head}\n${body}\n[policy]\nmode = "${mode}"\n`);
  return path;
}

function run(args) {
  const out = spawnSync(bin, args, { encoding: 'utf8' });
  return { status: out.status, stdout: out.stdout, stderr: out.stderr };
}

const USERS = {
  nobody: [],
  oneTeam: ['team-07'],
  twoGroups: ['team-12', 'all-3'],
  manyTeams: ['team-01', 'team-02', 'team-03', 'team-04', 'team-05', 'team-06', 'team-08'],
  unknownGroup: ['not-a-group'],
};

const visible = (b, groups) => b.region === 'us-west-2' && (b.groups.length === 0 || b.groups.some((g) => groups.includes(g)));

function decide({ identity, session, action, resource, context = {} }) {
  return simulate({ action, resource, context, identity, session });
}

// Every bucket for one user: allowed reads allowed, everything else denied.
async function proveUser(label, { identity, session, context }, groups) {
  let checked = 0;
  const expect = async (want, action, resource, extra = {}) => {
    const got = await decide({ identity, session, action, resource, context: { ...context, ...extra } });
    assert.equal(got === 'Allowed', want, `${label}: ${action} ${resource} ${JSON.stringify(extra)} → ${got}`);
    checked += 1;
  };
  for (const b of buckets) {
    const ok = visible(b, groups);
    const arn = `arn:aws:s3:::${b.name}`;
    await expect(ok, 's3:GetBucketLocation', arn);
    if (b.prefixes.length === 0) {
      await expect(ok, 's3:GetObject', `${arn}/some/key.nc`);
      await expect(ok, 's3:ListBucket', arn);
    } else {
      await expect(ok, 's3:GetObject', `${arn}/${b.prefixes[0]}granule.nc`);
      await expect(false, 's3:GetObject', `${arn}/private/granule.nc`);
      await expect(ok, 's3:ListBucket', arn, { 's3:prefix': b.prefixes[1] });
      await expect(false, 's3:ListBucket', arn, { 's3:prefix': '' });
    }
    await expect(false, 's3:PutObject', `${arn}/${b.prefixes[0] ?? ''}new.nc`);
    await expect(false, 's3:DeleteObject', `${arn}/${b.prefixes[0] ?? ''}granule.nc`);
  }
  await expect(false, 's3:ListAllMyBuckets', '*');
  return checked;
}

function scopeFor(config, groups) {
  const out = run(['policy', '--config', config, '--user', 'u', ...groups.flatMap((g) => ['--group', g])]);
  return out;
}

test('inline: refused for 200 buckets at startup, with the ways out named', () => {
  const out = run(['check-config', '--config', configFile('inline')]);
  assert.equal(out.status, 1);
  assert.match(out.stderr, /2048/);
  assert.match(out.stderr, /"managed"/);
  assert.match(out.stderr, /"tags"/);
});

test('managed: each user gets their groups\' policies as PolicyArns; together with the guard they grant exactly the configuration', async () => {
  const config = configFile('managed');
  assert.equal(run(['check-config', '--config', config]).status, 0);
  const managed = JSON.parse(run(['managed-policies', '--config', config]).stdout);
  const byArn = new Map(managed.map((m) => [m.arn, JSON.parse(m.document)]));
  for (const m of managed) {
    assert.ok(m.document.length <= 6144, `${m.name}: ${m.document.length}`);
    assert.ok(m.arn.startsWith(`arn:aws:iam::${ACCOUNT}:policy/stsvend/`), m.arn);
  }
  let total = 0;
  for (const [label, groups] of Object.entries(USERS)) {
    const out = scopeFor(config, groups);
    assert.equal(out.status, 0, out.stderr);
    const scope = JSON.parse(out.stdout);
    assert.ok(scope.PolicyArns.length <= 10);
    if (scope.mode === 'managed') {
      // Session policies act as one set: any Allow among them, any Deny wins.
      const statements = [...JSON.parse(scope.Policy).Statement];
      for (const arn of scope.PolicyArns) {
        assert.ok(byArn.has(arn), `${arn} is one of the managed policies`);
        statements.push(...byArn.get(arn).Statement);
      }
      total += await proveUser(`managed/${label}`, { identity: [EVERYTHING], session: { Version: '2012-10-17', Statement: statements }, context: {} }, groups);
    } else {
      assert.equal(scope.mode, 'inline', `${label}: ${scope.mode}`);
      total += await proveUser(`managed→inline/${label}`, { identity: [EVERYTHING], session: JSON.parse(scope.Policy), context: {} }, groups);
    }
  }
  assert.ok(total > 5000, `${total} simulations`);
});

test('tags: each user carries one tag per group and no bucket list; the role policy grants by tag', async () => {
  const config = configFile('tags');
  assert.equal(run(['check-config', '--config', config]).status, 0);
  const roleDocs = JSON.parse(run(['role-policy', '--config', config]).stdout);
  assert.ok(roleDocs.length >= 2 && roleDocs.length <= 20, `${roleDocs.length} documents`);
  for (const d of roleDocs) assert.ok(JSON.stringify(d).length <= 6144);
  let total = 0;
  for (const [label, groups] of Object.entries(USERS)) {
    const scope = JSON.parse(scopeFor(config, groups).stdout);
    assert.equal(scope.mode, 'tags');
    assert.deepEqual(scope.PolicyArns, []);
    assert.ok(!scope.Policy.includes('archive-bucket'), 'no bucket list in the call');
    assert.equal(scope.Tags.length, groups.filter((g) => buckets.some((b) => b.region === 'us-west-2' && b.groups.includes(g))).length);
    const context = Object.fromEntries(scope.Tags.map((t) => [`aws:PrincipalTag/${t.Key}`, t.Value]));
    total += await proveUser(`tags/${label}`, { identity: roleDocs, session: JSON.parse(scope.Policy), context }, groups);
  }
  // A session carrying a tag of a group the user is not in would read that group's buckets:
  // the evaluator sees the tag, so the tag is the whole grant (tags are set by stsvend only).
  const scope = JSON.parse(scopeFor(config, ['team-07']).stdout);
  const forged = { 'aws:PrincipalTag/stsvend-g-team-08': 'true' };
  assert.equal(await decide({ identity: roleDocs, session: JSON.parse(scope.Policy), action: 's3:GetObject', resource: 'arn:aws:s3:::archive-bucket-008/x', context: forged }), 'Allowed');
  assert.equal(await decide({ identity: roleDocs, session: JSON.parse(scope.Policy), action: 's3:GetObject', resource: 'arn:aws:s3:::archive-bucket-008/x', context: { 'aws:PrincipalTag/stsvend-g-team-08': 'false' } }), 'ImplicitlyDenied');
  assert.ok(total > 5000, `${total} simulations`);
});

// Narrowed (`?target=`): in managed and tags mode too the credential reads just the targets
// (inline, within 2,048 characters); in managed mode without the user's managed policies,
// which would allow more; in tags mode with the tags the role's policy needs.
test('narrowed: in managed and tags mode a credential for two targets reads just those', async () => {
  const targets = ['s3://archive-bucket-047/granules/2024/', 's3://archive-bucket-000/collection-000/sub/'];
  for (const mode of ['managed', 'tags']) {
    const config = configFile(mode);
    const roleDocs = mode === 'tags' ? JSON.parse(run(['role-policy', '--config', config]).stdout) : [EVERYTHING];
    const out = run(['policy', '--config', config, '--user', 'u', '--group', 'team-07', ...targets.flatMap((t) => ['--target', t])]);
    assert.equal(out.status, 0, out.stderr);
    const scope = JSON.parse(out.stdout);
    assert.equal(scope.mode, 'inline', mode);
    assert.deepEqual(scope.PolicyArns, [], mode);
    assert.ok(scope.Policy.length <= 2048, `${mode}: ${scope.Policy.length}`);
    assert.equal(scope.narrowed_to, 's3://archive-bucket-000/collection-000/sub/,s3://archive-bucket-047/granules/2024/');
    const context = Object.fromEntries(scope.Tags.map((t) => [`aws:PrincipalTag/${t.Key}`, t.Value]));
    assert.equal(Object.keys(context).length > 0, mode === 'tags', `${mode}: ${JSON.stringify(scope.Tags)}`);
    const session = JSON.parse(scope.Policy);
    const expect = async (want, action, resource, extra = {}) => {
      const got = await decide({ identity: roleDocs, session, action, resource, context: { ...context, ...extra } });
      assert.equal(got === 'Allowed', want, `${mode}: ${action} ${resource} ${JSON.stringify(extra)} → ${got}`);
    };
    const b47 = 'arn:aws:s3:::archive-bucket-047';
    const b0 = 'arn:aws:s3:::archive-bucket-000';
    await expect(true, 's3:GetObject', `${b47}/granules/2024/a.nc`);
    await expect(false, 's3:GetObject', `${b47}/granules/2023/a.nc`);
    await expect(false, 's3:GetObject', `${b47}/granules/2024`);
    await expect(true, 's3:ListBucket', b47, { 's3:prefix': 'granules/2024/' });
    await expect(false, 's3:ListBucket', b47, { 's3:prefix': 'granules/' });
    await expect(false, 's3:ListBucket', b47, { 's3:prefix': '' });
    await expect(true, 's3:GetObject', `${b0}/collection-000/sub/x.nc`);
    await expect(false, 's3:GetObject', `${b0}/collection-000/other.nc`);
    await expect(false, 's3:GetObject', `${b0}/browse/0/x.png`);
    // Readable by team-07 without narrowing, not with it.
    await expect(false, 's3:GetObject', 'arn:aws:s3:::archive-bucket-007/x.nc');
    await expect(false, 's3:GetObject', 'arn:aws:s3:::archive-bucket-010/x.nc');
    await expect(false, 's3:PutObject', `${b47}/granules/2024/new.nc`);
    await expect(false, 's3:DeleteObject', `${b47}/granules/2024/a.nc`);
    // A target outside the user's groups is refused, naming it.
    const refused = run(['policy', '--config', config, '--user', 'u', '--group', 'team-07', '--target', 's3://archive-bucket-008/', '--target', targets[0]]);
    assert.equal(refused.status, 1, mode);
    assert.match(refused.stderr, /s3:\/\/archive-bucket-008\/ \(not a bucket you may read here\)/);
  }
});
