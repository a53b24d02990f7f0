// Local OpenID provider for stsvend development and tests.
//
// oidc-provider (an OpenID-certified implementation) plays Earthdata Login: fixed demo users,
// a `groups` claim, a password form, and the Earthdata extras that scripts rely on:
//   * HTTP Basic credentials sent during the authorize step log the user in without a form
//     (what `curl -n` and Python `requests` with a .netrc do);
//   * `app_type=401` on the authorize request and no credentials -> 401 with a Basic challenge;
//   * POST /api/users/find_or_create_token (Basic auth) -> a signed JWT access token
//     (`?client_id=demo-platform`: the token the demo platform holds for the user);
//   * userinfo also accepts those JWT user tokens and answers with the account's current
//     groups (Earthdata's profile API does the same), so a service can re-read the groups of
//     a long-lived token.
//
// Everything is configured from environment variables so the test harness can start it on a
// free port. It never listens beyond 127.0.0.1.
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import Provider, { interactionPolicy } from 'oidc-provider';

const env = process.env;
const HOST = '127.0.0.1';
const PORT = Number(env.IDP_PORT ?? 9400);
const ISSUER = env.IDP_ISSUER ?? `http://${HOST}:${PORT}`;
const CLIENT_ID = env.IDP_CLIENT_ID ?? 'stsvend-local';
const CLIENT_SECRET = env.IDP_CLIENT_SECRET ?? 'stsvend-local-secret';
const AUDIENCE = env.IDP_TOKEN_AUDIENCE ?? CLIENT_ID;
// A platform (a JupyterHub, a tile server) with an OIDC client of its own: stsvend accepts
// tokens issued to it as its users' own, acting through it (stsvend's `[[platforms]]`).
const PLATFORM_CLIENT_ID = env.IDP_PLATFORM_CLIENT_ID ?? 'demo-platform';
// Earthdata user tokens live 60 days; the demo mirrors that unless told otherwise.
const TOKEN_TTL = Number(env.IDP_TOKEN_TTL ?? 60 * 24 * 3600);
// Loopback redirect URIs of a native client match on any port (RFC 8252 section 7.3), which is
// what lets tests run stsvend on port 0.
const REDIRECT_URIS = (env.IDP_REDIRECT_URIS ?? 'http://127.0.0.1/login,http://localhost/login')
  .split(',').map((s) => s.trim()).filter(Boolean);
// stsvend over https is a web client (native clients may not use https on 127.0.0.1): exact
// redirect URIs, the local stack's https port by default.
const HTTPS_REDIRECT_URIS = (env.IDP_HTTPS_REDIRECT_URIS ?? 'https://127.0.0.1:8443/login')
  .split(',').map((s) => s.trim()).filter(Boolean);
const POST_LOGOUT_URIS = (env.IDP_POST_LOGOUT_REDIRECT_URIS ?? 'http://127.0.0.1/,http://localhost/')
  .split(',').map((s) => s.trim()).filter(Boolean);

const USERS = {
  alice: { password: 'alice-pw', groups: ['science'], name: 'Alice Example' },
  bob: { password: 'bob-pw', groups: [], name: 'Bob Example' },
  carol: { password: 'carol-pw', groups: ['science', 'restricted'], name: 'Carol Example' },
};

function log(msg, extra = {}) {
  process.stdout.write(`${JSON.stringify({ ts: new Date().toISOString(), component: 'idp', msg, ...extra })}\n`);
}

// Signing keys: kept in a file when IDP_JWKS_FILE is set so tokens survive a restart of the
// local stack; generated in memory otherwise (tests get fresh keys every run).
// A native client (chosen for its any-port loopback redirects) would otherwise be asked for
// consent on every login; this IdP's only client is trusted.
function policy() {
  const base = interactionPolicy.base();
  base.get('consent').checks.remove('native_client_prompt');
  return base;
}

function signingKeys() {
  const file = env.IDP_JWKS_FILE;
  if (file && existsSync(file)) {
    return JSON.parse(readFileSync(file, 'utf8'));
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: `local-${Date.now().toString(36)}`, use: 'sig', alg: 'RS256' };
  const jwks = { keys: [jwk] };
  if (file) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(jwks), { mode: 0o600 });
  }
  return jwks;
}

function checkBasic(header) {
  if (typeof header !== 'string' || !header.toLowerCase().startsWith('basic ')) return undefined;
  let decoded;
  try {
    decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  } catch {
    return undefined;
  }
  const sep = decoded.indexOf(':');
  if (sep < 0) return undefined;
  const user = decoded.slice(0, sep);
  const password = decoded.slice(sep + 1);
  return Object.hasOwn(USERS, user) && USERS[user].password === password ? user : undefined;
}

const JWKS = signingKeys();
// Test-only key rotation (POST /test/rotate): the key user tokens are signed with, and the set
// /oauth/jwks publishes (the provider's own keys until a rotation).
let SIGNING = JWKS.keys[0];
let PUBLISHED = undefined;

const provider = new Provider(ISSUER, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    application_type: 'native',
    redirect_uris: REDIRECT_URIS,
    post_logout_redirect_uris: POST_LOGOUT_URIS,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  }, {
    client_id: `${CLIENT_ID}-https`,
    client_secret: CLIENT_SECRET,
    application_type: 'web',
    redirect_uris: HTTPS_REDIRECT_URIS,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  }, {
    client_id: PLATFORM_CLIENT_ID,
    client_secret: 'demo-platform-secret',
    redirect_uris: ['https://platform.example/callback'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }, {
    // Another application at the same IdP: its tokens must not work at stsvend.
    client_id: 'other-app',
    client_secret: 'other-app-secret',
    redirect_uris: ['https://other.example/callback'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: JWKS,
  cookies: { keys: [env.IDP_COOKIE_KEY ?? 'stsvend-local-idp-cookie-key-not-a-secret'] },
  routes: {
    authorization: '/oauth/authorize',
    token: '/oauth/token',
    userinfo: '/oauth/userinfo',
    jwks: '/oauth/jwks',
    end_session: '/oauth/logout',
  },
  scopes: ['openid', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // Earthdata puts what stsvend needs straight into the ID token; so does this IdP.
  conformIdTokenClaims: false,
  extraParams: ['app_type'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true },
    // RFC 7662: stsvend checks opaque tokens here (active, and issued to stsvend).
    introspection: { enabled: true },
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: 24 * 3600,
    Grant: 24 * 3600,
  },
  interactions: { policy: policy(), url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, id) {
    if (!Object.hasOwn(USERS, id)) return undefined;
    const user = USERS[id];
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: user.name, preferred_username: id, groups: user.groups };
      },
    };
  },
  async extraTokenClaims(_ctx, token) {
    const user = token.accountId && USERS[token.accountId];
    return user ? { groups: user.groups } : undefined;
  },
  // No consent screen: whatever the (single, trusted) client asks for is granted.
  async loadExistingGrant(ctx) {
    const { Grant } = ctx.oidc.provider;
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    let grant = grantId ? await Grant.find(grantId) : undefined;
    if (!grant) {
      grant = new Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    }
    grant.addOIDCScope(ctx.oidc.params.scope ?? 'openid');
    await grant.save();
    return grant;
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<p>${escapeHtml(out.error)}: ${escapeHtml(out.error_description ?? '')}</p>`);
  },
});

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

function loginForm(uid, message) {
  return page('Local Earthdata-style login', `
${message ? `<p role="alert" id="error">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
  <label>Username <input id="username" name="username" required autofocus></label>
  <label>Password <input id="password" name="password" type="password" required></label>
  <button type="submit" id="login">Log in</button>
</form>
<p>Demo users: alice / alice-pw, bob / bob-pw, carol / carol-pw.</p>`);
}

async function readForm(req, limit = 16 * 1024) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function finishLogin(ctx, accountId) {
  const to = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId } }, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(to);
}

async function interaction(ctx, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = page('Login expired', '<p>This login attempt is unknown or has expired. Start again from the application.</p>');
    return;
  }
  if (details.uid !== uid) {
    ctx.status = 400;
    ctx.body = page('Login mismatch', '<p>Start again from the application.</p>');
    return;
  }
  if (details.prompt.name !== 'login') {
    // Consent is granted by loadExistingGrant; any other prompt just resumes.
    const to = await provider.interactionResult(ctx.req, ctx.res, {}, { mergeWithLastSubmission: true });
    ctx.status = 303;
    ctx.redirect(to);
    return;
  }
  if (action === 'login' && ctx.method === 'POST') {
    let form;
    try {
      form = await readForm(ctx.req);
    } catch {
      ctx.status = 413;
      ctx.body = page('Too large', '');
      return;
    }
    const user = form.get('username') ?? '';
    const ok = Object.hasOwn(USERS, user) && USERS[user].password === (form.get('password') ?? '');
    if (!ok) {
      log('login failed', { user: user.slice(0, 64) });
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginForm(uid, 'Invalid username or password.');
      return;
    }
    log('login', { user, via: 'form' });
    await finishLogin(ctx, user);
    return;
  }
  const basicUser = checkBasic(ctx.get('authorization'));
  if (basicUser) {
    log('login', { user: basicUser, via: 'basic' });
    await finishLogin(ctx, basicUser);
    return;
  }
  if (details.params.app_type === '401') {
    ctx.status = 401;
    ctx.set('WWW-Authenticate', 'Basic realm="Please enter your Earthdata Login credentials"');
    ctx.type = 'text/plain';
    ctx.body = 'HTTP Basic: Access denied.\n';
    return;
  }
  ctx.type = 'html';
  ctx.body = loginForm(uid);
}

function formatExpiration(date) {
  // Earthdata Login answers with MM/DD/YYYY.
  const mm = String(date.getUTCMonth() + 1).padStart(2, '0');
  const dd = String(date.getUTCDate()).padStart(2, '0');
  return `${mm}/${dd}/${date.getUTCFullYear()}`;
}

async function tokenApi(ctx) {
  const user = checkBasic(ctx.get('authorization'));
  if (!user) {
    ctx.status = 401;
    ctx.set('WWW-Authenticate', 'Basic realm="Earthdata Login"');
    ctx.body = { error: 'invalid_credentials', error_description: 'Basic authentication with a valid username and password is required' };
    return;
  }
  // ?client_id= the platform: the token a platform holds for its user (issued to the
  // platform's client, for the platform's audience); otherwise stsvend's own.
  const forPlatform = ctx.query.client_id === PLATFORM_CLIENT_ID;
  const clientId = forPlatform ? PLATFORM_CLIENT_ID : CLIENT_ID;
  const audience = forPlatform ? PLATFORM_CLIENT_ID : AUDIENCE;
  const client = await provider.Client.find(clientId);
  const resourceServer = new provider.ResourceServer(audience, {
    audience,
    scope: 'openid groups',
    accessTokenFormat: 'jwt',
    accessTokenTTL: TOKEN_TTL,
    jwt: { sign: { alg: 'RS256' } },
  });
  const token = new provider.AccessToken({
    accountId: user, client, scope: 'openid groups', resourceServer, expiresIn: TOKEN_TTL,
  });
  const accessToken = await token.save();
  log('token issued', { user, client: clientId });
  ctx.set('Cache-Control', 'no-store');
  ctx.body = {
    access_token: accessToken,
    token_type: 'Bearer',
    expiration_date: formatExpiration(new Date(Date.now() + TOKEN_TTL * 1000)),
  };
}

// Test-only (IDP_TEST_MINT=1): sign arbitrary claims with the provider's real key, so tests
// can present expired, wrong-audience or wrong-issuer tokens that still carry a valid
// signature. Never enabled by the local stack.
const b64url = (buf) => Buffer.from(buf).toString('base64url');
async function readJson(req, limit = 64 * 1024) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('body too large');
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

async function mint(ctx) {
  const input = await readJson(ctx.req);
  const jwk = SIGNING;
  const now = Math.floor(Date.now() / 1000);
  const user = USERS[input.sub ?? 'alice'];
  const header = { alg: 'RS256', typ: 'at+jwt', kid: jwk.kid, ...(input.header ?? {}) };
  const payload = {
    iss: ISSUER, sub: input.sub ?? 'alice', aud: AUDIENCE, iat: now, exp: now + 3600,
    client_id: CLIENT_ID, groups: user ? user.groups : [], ...(input.claims ?? {}),
  };
  for (const [k, v] of Object.entries(payload)) if (v === null) delete payload[k];
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const signature = sign('RSA-SHA256', Buffer.from(signingInput), createPrivateKey({ key: jwk, format: 'jwk' }));
  ctx.body = { token: `${signingInput}.${b64url(signature)}` };
}

// Test-only: an opaque access token (the kind the code flow issues), which only the
// userinfo endpoint can check.
async function mintOpaque(ctx) {
  const input = await readJson(ctx.req);
  const user = input.sub ?? 'alice';
  if (!Object.hasOwn(USERS, user)) {
    ctx.status = 400;
    ctx.body = { error: 'unknown user' };
    return;
  }
  const clientId = input.client_id ?? CLIENT_ID;
  const client = await provider.Client.find(clientId);
  // userinfo checks the grant behind a token, so the token gets one.
  const grant = new provider.Grant({ accountId: user, clientId });
  grant.addOIDCScope('openid groups');
  const grantId = await grant.save();
  const token = new provider.AccessToken({ accountId: user, client, scope: 'openid groups', grantId });
  ctx.body = { token: await token.save() };
}

// Test-only changes to accounts, made as an administrator would at Earthdata Login:
// { sub, groups } replaces a user's groups, { sub, disabled: true } disables the account.
const ACCOUNT_CHANGES = new Map();
// Userinfo calls made with a JWT user token, by subject (GET /test/userinfo-calls?sub=S).
const USERINFO_CALLS = new Map();

function currentAccount(sub) {
  const change = ACCOUNT_CHANGES.get(sub);
  if (change?.disabled) return undefined;
  const groups = change?.groups ?? USERS[sub]?.groups;
  return groups ? { sub, groups } : undefined;
}

// A JWT user token (as find_or_create_token and the test minter issue) checked against this
// IdP's own key, issuer, audience and expiry; its subject, or undefined.
function verifiedUserToken(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
    const payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    const jwk = (PUBLISHED ?? JWKS).keys.find((k) => k.kid === header.kid);
    if (!jwk || header.alg !== 'RS256') return undefined;
    const { d, p, q, dp, dq, qi, ...pub } = jwk;
    const ok = verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`),
      createPublicKey({ key: pub, format: 'jwk' }), Buffer.from(parts[2], 'base64url'));
    const now = Math.floor(Date.now() / 1000);
    const audiences = [AUDIENCE, PLATFORM_CLIENT_ID];
    if (!ok || payload.iss !== ISSUER || !audiences.includes(payload.aud) || !(payload.exp > now)) return undefined;
    return typeof payload.sub === 'string' ? payload.sub : undefined;
  } catch {
    return undefined;
  }
}

provider.use(async (ctx, next) => {
  const bearer = /^Bearer (.+)$/i.exec(ctx.get('authorization') ?? '')?.[1];
  if (ctx.path === '/oauth/userinfo' && ctx.method === 'GET' && bearer?.split('.').length === 3) {
    const sub = verifiedUserToken(bearer);
    if (sub) USERINFO_CALLS.set(sub, (USERINFO_CALLS.get(sub) ?? 0) + 1);
    const account = sub && (currentAccount(sub) ?? (ACCOUNT_CHANGES.has(sub) ? undefined : { sub, groups: [] }));
    log('userinfo-jwt', { ok: Boolean(account) });
    if (!account) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Bearer error="invalid_token"');
      ctx.body = { error: 'invalid_token' };
      return;
    }
    ctx.body = account;
    return;
  }
  if (ctx.path === '/oauth/jwks' && ctx.method === 'GET' && PUBLISHED) {
    log('jwks');
    ctx.type = 'application/jwk-set+json';
    ctx.body = { keys: PUBLISHED.keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub) };
    return;
  }
  // { step: "add" } signs new tokens with a fresh key published beside the old one;
  // { step: "retire" } then withdraws every other key.
  if (env.IDP_TEST_MINT === '1' && ctx.method === 'POST' && ctx.path === '/test/rotate') {
    const input = await readJson(ctx.req);
    if (input.step === 'add') {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      SIGNING = { ...privateKey.export({ format: 'jwk' }), kid: `rotated-${Date.now().toString(36)}`, use: 'sig', alg: 'RS256' };
      PUBLISHED = { keys: [SIGNING, ...(PUBLISHED?.keys ?? JWKS.keys)] };
    } else if (input.step === 'retire') {
      PUBLISHED = { keys: [SIGNING] };
    }
    ctx.body = { kid: SIGNING.kid, published: PUBLISHED.keys.map((k) => k.kid) };
    return;
  }
  if (env.IDP_TEST_MINT === '1' && ctx.method === 'GET' && ctx.path === '/test/userinfo-calls') {
    ctx.body = { calls: USERINFO_CALLS.get(String(ctx.query.sub)) ?? 0 };
    return;
  }
  if (env.IDP_TEST_MINT === '1' && ctx.method === 'POST' && ctx.path === '/test/account') {
    const input = await readJson(ctx.req);
    ACCOUNT_CHANGES.set(String(input.sub), { groups: input.groups, disabled: Boolean(input.disabled) });
    ctx.body = { ok: true };
    return;
  }
  if (env.IDP_TEST_MINT === '1' && ctx.method === 'POST' && ctx.path === '/test/mint-opaque') {
    await mintOpaque(ctx);
    return;
  }
  if (ctx.path === '/oauth/jwks') log('jwks');
  if (ctx.path === '/favicon.ico') {
    ctx.status = 204;
    return;
  }
  if (env.IDP_TEST_MINT === '1' && ctx.method === 'POST' && ctx.path === '/test/mint') {
    await mint(ctx);
    return;
  }
  const m = /^\/interaction\/([\w-]+)(?:\/(login))?$/.exec(ctx.path);
  if (m) {
    await interaction(ctx, m[1], m[2]);
    return;
  }
  if (ctx.path === '/api/users/find_or_create_token') {
    if (ctx.method !== 'POST') {
      ctx.status = 405;
      return;
    }
    await tokenApi(ctx);
    return;
  }
  await next();
});

provider.on('server_error', (_ctx, err) => log('server_error', { error: String(err?.stack ?? err) }));

// Die with the process that started us (test harness, local stack) instead of lingering.
const parent = Number(env.IDP_PARENT_PID ?? 0);
if (parent > 0) {
  setInterval(() => {
    try {
      process.kill(parent, 0);
    } catch (err) {
      // Only "no such process" means the parent is gone.
      if (err.code === 'ESRCH') process.exit(0);
    }
  }, 500).unref();
}

const server = provider.listen(PORT, HOST, () => {
  log('listening', { issuer: ISSUER, port: server.address().port, client_id: CLIENT_ID });
});
// Keep-alive connections would hold server.close() open indefinitely: drop them.
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
