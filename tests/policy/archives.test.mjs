// Several archives: three, each with its own role (two accounts), buckets and policy mode
// (inline, managed, tags), some group names shared between them. What the real binary emits
// for each archive (`stsvend policy --archive`, `managed-policies --archive`, `role-policy
// --archive`) goes through the IAM evaluator against every bucket of every archive: a user's
// session of one archive reads exactly that archive's buckets their groups allow, and nothing
// of the others, in every mode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { simulate } from './evaluator.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = process.env.STSVEND_BIN
  ?? join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'debug', 'stsvend');
const EVERYTHING = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: '*' }] };

const ARCHIVES = {
  main: { mode: 'inline', account: '123456789012', prefix: 'main' },
  ocean: { mode: 'managed', account: '210987654321', prefix: 'ocean' },
  land: { mode: 'tags', account: '210987654321', prefix: 'land' },
};
// Bucket i of each archive: groups team-(i % 4) (the same names in every archive), every
// fifth open to everyone, every third limited to a prefix; one bucket of each in another region.
const BUCKETS = Object.fromEntries(Object.entries(ARCHIVES).map(([name, a]) => {
  const list = Array.from({ length: 12 }, (_, i) => ({
    name: `${a.prefix}-bucket-${String(i).padStart(2, '0')}`,
    region: 'us-west-2',
    prefixes: i % 3 === 0 ? [`collection-${i}/`] : [],
    groups: i % 5 === 0 ? [] : [`team-${i % 4}`],
  }));
  list.push({ name: `${a.prefix}-elsewhere`, region: 'us-east-1', prefixes: [], groups: ['team-1'] });
  return [name, list];
}));
const ALL = Object.entries(BUCKETS).flatMap(([archive, list]) => list.map((b) => ({ ...b, archive })));

function bucketsToml(table, list) {
  return list.map((b) => `[[${table}]]\nname = "${b.name}"\nregion = "${b.region}"\nprefixes = ${JSON.stringify(b.prefixes)}\ngroups = ${JSON.stringify(b.groups)}\n`).join('\n');
}

function configFile() {
  const dir = mkdtempSync(join(tmpdir(), 'stsvend-archives-'));
  const head = readFileSync(join(root, 'config', 'local.toml'), 'utf8')
    .split('[[buckets]]')[0]
    .replaceAll('../deploy/local/', join(root, 'deploy', 'local') + '/');
  let text = `${head}\n${bucketsToml('buckets', BUCKETS.main)}\n[policy]\nmode = "inline"\n`;
  for (const name of ['ocean', 'land']) {
    const a = ARCHIVES[name];
    text += `\n[[archives]]\nname = "${name}"\nsts = { role_arn = "arn:aws:iam::${a.account}:role/${name}-read", external_id = "stsvend-${name}" }\npolicy = { mode = "${a.mode}" }\n${bucketsToml('archives.buckets', BUCKETS[name])}`;
  }
  const path = join(dir, 'archives.toml');
  writeFileSync(path, text);
  return path;
}

function run(args) {
  const out = spawnSync(bin, args, { encoding: 'utf8' });
  return { status: out.status, stdout: out.stdout, stderr: out.stderr };
}

const USERS = { nobody: [], team1: ['team-1'], two: ['team-2', 'team-3'], stranger: ['not-a-group'] };
const visible = (b, archive, groups) => b.archive === archive && b.region === 'us-west-2'
  && (b.groups.length === 0 || b.groups.some((g) => groups.includes(g)));

// The evaluator's view of one user's session of `archive`: identity (the role's policies)
// and the session policies, with the session's tags as context.
function sessionOf(config, archive, groups, targets = []) {
  const out = run(['policy', '--config', config, '--user', 'u', '--archive', archive,
    ...groups.flatMap((g) => ['--group', g]), ...targets.flatMap((t) => ['--target', t])]);
  if (out.status !== 0) return { refused: out.stderr };
  const scope = JSON.parse(out.stdout);
  assert.equal(scope.archive, archive);
  const role = archive === 'main' ? 'stsvend-read' : `${archive}-read`;
  assert.equal(scope.RoleArn, `arn:aws:iam::${ARCHIVES[archive].account}:role/${role}`);
  const context = Object.fromEntries(scope.Tags.map((t) => [`aws:PrincipalTag/${t.Key}`, t.Value]));
  if (scope.mode === 'managed') {
    const managed = JSON.parse(run(['managed-policies', '--config', config, '--archive', archive]).stdout);
    const byArn = new Map(managed.map((m) => [m.arn, JSON.parse(m.document).Statement]));
    const statements = [...JSON.parse(scope.Policy).Statement];
    for (const arn of scope.PolicyArns) {
      assert.ok(arn.startsWith(`arn:aws:iam::${ARCHIVES[archive].account}:policy/`), arn);
      assert.ok(byArn.has(arn), arn);
      statements.push(...byArn.get(arn));
    }
    return { identity: [EVERYTHING], session: { Version: '2012-10-17', Statement: statements }, context, scope };
  }
  if (scope.mode === 'tags') {
    const roleDocs = JSON.parse(run(['role-policy', '--config', config, '--archive', archive]).stdout);
    return { identity: roleDocs, session: JSON.parse(scope.Policy), context, scope };
  }
  return { identity: [EVERYTHING], session: JSON.parse(scope.Policy), context, scope };
}

test('each archive\'s sessions read exactly its own buckets the user may read, in every mode', async () => {
  const config = configFile();
  const check = run(['check-config', '--config', config]);
  assert.equal(check.status, 0, check.stderr);
  for (const name of Object.keys(ARCHIVES)) assert.match(check.stderr, new RegExp(`archive "${name}"`));
  let total = 0;
  for (const archive of Object.keys(ARCHIVES)) {
    for (const [label, groups] of Object.entries(USERS)) {
      const s = sessionOf(config, archive, groups);
      const anyVisible = ALL.some((b) => visible(b, archive, groups));
      if (s.refused) {
        assert.ok(!anyVisible, `${archive}/${label}: refused but should read something: ${s.refused}`);
        continue;
      }
      for (const b of ALL) {
        const want = visible(b, archive, groups);
        const arn = `arn:aws:s3:::${b.name}`;
        const key = b.prefixes.length ? `${arn}/${b.prefixes[0]}granule.nc` : `${arn}/any/granule.nc`;
        for (const [action, resource, extra] of [
          ['s3:GetObject', key, {}],
          ['s3:ListBucket', arn, { 's3:prefix': b.prefixes[0] ?? '' }],
          ['s3:GetBucketLocation', arn, {}],
        ]) {
          const got = await simulate({ identity: s.identity, session: s.session, action, resource, context: { ...s.context, ...extra } });
          assert.equal(got === 'Allowed', want, `${archive}/${label}: ${action} ${resource} → ${got}`);
          total += 1;
        }
        const write = await simulate({ identity: s.identity, session: s.session, action: 's3:PutObject', resource: key, context: s.context });
        assert.notEqual(write, 'Allowed', `${archive}/${label}: PutObject ${key}`);
        total += 1;
      }
    }
  }
  assert.ok(total > 1500, `${total} simulations`);
});

test('a target is scoped by the archive that owns its bucket, and narrowed to it', async () => {
  const config = configFile();
  // Without --archive, `policy` routes as the service does: by the targets' buckets.
  const out = run(['policy', '--config', config, '--user', 'u', '--group', 'team-1', '--target', 's3://land-bucket-01/sub/']);
  assert.equal(out.status, 0, out.stderr);
  const scope = JSON.parse(out.stdout);
  assert.equal(scope.archive, 'land');
  assert.equal(scope.mode, 'inline');
  const s = sessionOf(config, 'land', ['team-1'], ['s3://land-bucket-01/sub/']);
  for (const [want, resource] of [
    [true, 'arn:aws:s3:::land-bucket-01/sub/x.nc'],
    [false, 'arn:aws:s3:::land-bucket-01/other.nc'],
    [false, 'arn:aws:s3:::land-bucket-05/x.nc'],
    [false, 'arn:aws:s3:::ocean-bucket-01/sub/x.nc'],
    [false, 'arn:aws:s3:::main-bucket-01/sub/x.nc'],
  ]) {
    const got = await simulate({ identity: s.identity, session: s.session, action: 's3:GetObject', resource, context: s.context });
    assert.equal(got === 'Allowed', want, `${resource} → ${got}`);
  }
  // Another archive's bucket is not this archive's to grant.
  const refused = sessionOf(config, 'land', ['team-1'], ['s3://ocean-bucket-01/']);
  assert.match(refused.refused, /ocean-bucket-01\/ \(not a bucket you may read here\)/);
});
