// The local authorization server: panva's oidc-provider (a certified OpenID provider) configured for the fleet.
// Nothing of OAuth is written here; this file only says what the fleet is, who the dev people are, and how the
// login and consent pages look.
//
//   node authz/server.mjs CONFIG.json      (or the same JSON in AUTHZ_CONFIG)
//
// The configuration is rendered by the platform from the servers' declarations (`infra/authz.py`): the issuer, each
// server's resource URL and scopes, and each person's login and the scopes they may be granted. Secrets come from
// the environment: AUTHZ_COOKIE_KEYS (space-separated), a password per person (the variable the config names),
// and the signing key: AUTHZ_SIGNING_KEY (an RSA private key, PEM; the cluster's, from a Secret) or else the keys
// in AUTHZ_KEYS_FILE (created with a new RS256 key when absent, so a restart keeps them; the composition's).
//
// What it serves (oidc-provider's own routes): OpenID and RFC 8414 discovery, dynamic client registration
// (RFC 7591), authorization code with PKCE (S256 only, required of every client), RFC 8707 resource indicators
// (the token's `aud` is the one resource asked for; a token for one server is refused by every other), RFC 9068
// JWT access tokens signed with an asymmetric key published at /jwks, and refresh tokens rotated on each use
// by a public client.
import { createServer } from 'node:http';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { timingSafeEqual, createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`authz: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const config = JSON.parse(process.argv[2] ? readFileSync(process.argv[2], 'utf8') : required('AUTHZ_CONFIG'));
const resources = new Map(Object.entries(config.resources)); // resource URL -> { name, scopes }
const people = new Map(Object.entries(config.people)); // login -> { scopes, passwordVariable }

// RFC 7638: the key's thumbprint names it, so the same key always has the same kid.
function thumbprint({ e, kty, n }) {
  return createHash('sha256').update(JSON.stringify({ e, kty, n })).digest('base64url');
}

function signingKeys() {
  if (process.env.AUTHZ_SIGNING_KEY) {
    const jwk = createPrivateKey(process.env.AUTHZ_SIGNING_KEY).export({ format: 'jwk' });
    return { keys: [{ ...jwk, kid: thumbprint(jwk), alg: 'RS256', use: 'sig' }] };
  }
  const file = required('AUTHZ_KEYS_FILE');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const exported = privateKey.export({ format: 'jwk' });
  const jwk = { ...exported, kid: thumbprint(exported), alg: 'RS256', use: 'sig' };
  const keys = { keys: [jwk] };
  writeFileSync(file, JSON.stringify(keys), { mode: 0o600 });
  return keys;
}

const passwords = new Map([...people].map(([login, person]) => [login, required(person.passwordVariable)]));
const digest = (text) => createHash('sha256').update(text, 'utf8').digest();
function passwordMatches(login, given) {
  const expected = passwords.get(login);
  if (expected === undefined || typeof given !== 'string') return false;
  return timingSafeEqual(digest(expected), digest(given)); // equal lengths: no length leak, no early exit
}

const serverScopes = [...new Set([...resources.values()].flatMap((resource) => resource.scopes))];

const provider = new Provider(config.issuer, {
  jwks: signingKeys(),
  // The servers' own pages (a connect page signs the person in to learn who opened it): public clients, PKCE.
  clients: config.clients ?? [],
  cookies: { keys: required('AUTHZ_COOKIE_KEYS').split(/\s+/) },
  scopes: ['openid', 'offline_access', ...serverScopes],
  claims: { openid: ['sub'] },
  async findAccount(_ctx, id) {
    if (!people.has(id)) return undefined;
    return { accountId: id, async claims() { return { sub: id }; } };
  },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true }, // open dynamic registration, as MCP clients expect on a dev stack
    // Client ID metadata documents (the MCP 2025-11-25 way to name a client by an https URL it hosts): fetched only
    // from public DNS names, never an address or an in-cluster name, so a client id cannot make this server call
    // inside the platform. (On the cluster it has no egress at all; there, clients register.)
    clientIdMetadataDocument: {
      enabled: true,
      ack: 'draft-02',
      async allowFetch(_ctx, clientId) {
        const { protocol, hostname } = new URL(clientId);
        const internal = /(^localhost$|\.localhost$|\.svc$|\.local$|\.internal$|^[\d.]+$|^\[)/i;
        return protocol === 'https:' && hostname.includes('.') && !internal.test(hostname);
      },
    },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A client that names no resource gets no access token for any server.
      async defaultResource(_ctx, _client, oneOf) { return oneOf; },
      async useGrantedResource() { return true; },
      async getResourceServerInfo(_ctx, indicator) {
        const resource = resources.get(indicator);
        if (!resource) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        return {
          scope: resource.scopes.join(' '),
          audience: indicator,
          accessTokenTTL: config.accessTokenSeconds,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  responseTypes: ['code'], // OAuth 2.1: the code flow alone
  pkce: { required: () => true },
  // Public clients (every MCP client on a laptop) get refresh tokens without asking for offline_access, rotated
  // on each use (oidc-provider's default for clients that do not authenticate).
  async issueRefreshToken(_ctx, client) { return client.grantTypeAllowed('refresh_token'); },
  ttl: {
    AccessToken: config.accessTokenSeconds, RefreshToken: 14 * 24 * 3600, Interaction: 600, Session: 8 * 3600, Grant: 14 * 24 * 3600,
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Sign-in failed', `<p>${escape(out.error)}: ${escape(out.error_description ?? '')}</p>`);
  },
});
provider.proxy = Boolean(config.behindProxy);

// OAuth 2.1 §3.2.2.1: a request that names no scope is served with a default. Here: every scope of the one resource
// it names (what a client that reads the server's metadata would ask for); the consent page then grants the person's.
provider.use(async (ctx, next) => {
  if (ctx.path === '/auth' && ctx.method === 'GET' && !ctx.query.scope && typeof ctx.query.resource === 'string') {
    const resource = resources.get(ctx.query.resource);
    if (resource) ctx.query = { ...ctx.query, scope: resource.scopes.join(' ') };
  }
  await next();
});

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>${escape(title)}</h1>${body}</main></body></html>`;
}

function loginPage(uid, clientName, failed) {
  return page(`Sign in to mcpfleet`, `<p>${escape(clientName)} asks to act for you.</p>
${failed ? '<p role="alert">Wrong login or password.</p>' : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Login <input name="login" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form>`);
}

function consentPage(uid, clientName, login, asked) {
  const rows = asked.map(({ name, indicator, granted, refused }) => `<li><strong>${escape(name)}</strong>
(<code>${escape(indicator)}</code>): ${granted.length ? escape(granted.join(', ')) : 'nothing'}${refused.length
    ? `; not yours to grant: ${escape(refused.join(', '))}` : ''}</li>`).join('');
  return page(`Allow ${clientName}?`, `<p>Signed in as <strong>${escape(login)}</strong>.
${escape(clientName)} asks for:</p><ul>${rows}</ul>
<form method="post" action="/interaction/${escape(uid)}/confirm"><button type="submit">Allow</button></form>
<form method="post" action="/interaction/${escape(uid)}/abort"><button type="submit">Deny</button></form>`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 8192) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

// What the person may grant of what a client asks, per resource: the person's scopes, and nothing else.
function grantable(details, login) {
  const mine = new Set(people.get(login)?.scopes ?? []);
  return Object.entries(details.missingResourceScopes ?? {}).map(([indicator, scopes]) => ({
    indicator,
    name: resources.get(indicator)?.name ?? indicator,
    granted: scopes.filter((scope) => mine.has(scope)),
    refused: scopes.filter((scope) => !mine.has(scope)),
  }));
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new errors.InvalidRequest('interaction mismatch');
  const client = await provider.Client.find(details.params.client_id);
  const clientName = client?.clientName ?? details.params.client_id;
  // The forms post here, and the answer redirects (through /auth) back to this client's registered redirect URI:
  // browsers hold a form's redirects to form-action too, so that one origin is allowed, and nothing else.
  const clientOrigin = new URL(details.params.redirect_uri).origin;
  const send = (status, html) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store',
      'x-frame-options': 'DENY', 'content-security-policy': `default-src 'none'; form-action 'self' ${clientOrigin}` });
    res.end(html);
  };
  if (action === 'abort') {
    return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the person said no' },
      { mergeWithLastSubmission: false });
  }
  if (details.prompt.name === 'login') {
    if (action === 'login' && req.method === 'POST') {
      const form = await readForm(req);
      const login = form.get('login') ?? '';
      if (!passwordMatches(login, form.get('password'))) return send(401, loginPage(uid, clientName, true));
      return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    }
    return send(200, loginPage(uid, clientName, false));
  }
  // consent: the grant holds what the person may grant of what was asked, and nothing else
  const login = details.session.accountId;
  const asked = grantable(details.prompt.details, login);
  if (action !== 'confirm' || req.method !== 'POST') return send(200, consentPage(uid, clientName, login, asked));
  if (asked.length && asked.every(({ granted }) => granted.length === 0)) {
    return provider.interactionFinished(req, res, { error: 'access_denied', error_description: `${login} may grant none of the scopes asked for` },
      { mergeWithLastSubmission: false });
  }
  const grant = details.grantId ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: login, clientId: details.params.client_id });
  // The servers' scopes are listed as the provider's scopes too (discovery advertises them); as OpenID scopes they
  // grant nothing, so only openid and offline_access are granted there, and the rest answered as refused.
  const oidcAsked = details.prompt.details.missingOIDCScope ?? [];
  const oidcScopes = oidcAsked.filter((scope) => ['openid', 'offline_access'].includes(scope));
  const notOidc = oidcAsked.filter((scope) => !oidcScopes.includes(scope));
  if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));
  if (notOidc.length) grant.rejectOIDCScope(notOidc.join(' '));
  for (const { indicator, granted, refused } of asked) {
    if (granted.length) grant.addResourceScope(indicator, granted.join(' '));
    if (refused.length) grant.rejectResourceScope(indicator, refused.join(' ')); // asked and answered: never again
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();

// Registrations, grants and sessions share one bounded in-memory store, and sign-ins guess passwords: each client
// address gets its share of both (a sliding minute), so no one address can fill the store or try passwords at will.
const perMinute = { registration: config.limits.registrationsPerMinute, signIn: config.limits.signInsPerMinute };
const recent = new Map(); // `${kind} ${address}` -> times within the last minute
function withinShare(kind, req) {
  const forwarded = provider.proxy ? String(req.headers['x-forwarded-for'] ?? '').split(',')[0].trim() : '';
  const key = `${kind} ${forwarded || req.socket.remoteAddress}`;
  const now = Date.now();
  const times = (recent.get(key) ?? []).filter((at) => now - at < 60_000);
  if (times.length >= perMinute[kind]) return false;
  times.push(now);
  recent.set(key, times);
  if (recent.size > 10_000) recent.delete(recent.keys().next().value); // the oldest address goes first
  return true;
}
function tooMany(res) {
  res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '60' });
  res.end(JSON.stringify({ error: 'too_many_requests', error_description: 'this address is over its share; retry later' }));
}
const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(login|confirm|abort))?$/;

createServer(async (req, res) => {
  const url = new URL(req.url, 'http://local');
  if (url.pathname === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    return res.end('ok');
  }
  const match = INTERACTION.exec(url.pathname);
  if (req.method === 'POST' && url.pathname === '/reg' && !withinShare('registration', req)) return tooMany(res);
  if (req.method === 'POST' && match?.[2] === 'login' && !withinShare('signIn', req)) return tooMany(res);
  if (!match) return callback(req, res);
  try {
    await interaction(req, res, match[1], match[2]);
  } catch (error) {
    if (!res.headersSent) {
      res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page('Sign-in failed', `<p>${escape(error.name ?? 'error')}: ${escape(error.message ?? '')}</p>`));
    }
  }
}).listen(config.port, config.host, () => {
  console.log(JSON.stringify({ event: 'authz_listening', issuer: config.issuer, port: config.port,
    resources: [...resources.keys()], people: [...people.keys()] }));
});
