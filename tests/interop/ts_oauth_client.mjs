// The whole OAuth flow, run by clients we did not write: the TypeScript MCP SDK's OAuth client does discovery,
// registration, PKCE, the token exchange, refresh and step-up; Debian's Chromium (through playwright-core, never a
// browser download) is the person's browser on the authorization server's login and consent pages.
//
//   node ts_oauth_client.mjs SERVER_URL READER READER_PASSWORD WRITER WRITER_PASSWORD
//
// Prints one JSON report of what each party did, step by step.
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, refreshAuthorization } from '@modelcontextprotocol/sdk/client/auth.js';

const [serverUrl, reader, readerPassword, writer, writerPassword] = process.argv.slice(2);
const steps = [];
const step = (what, detail = {}) => steps.push({ step: what, ...detail });

// The redirect URI: a loopback listener, as a desktop client runs one (RFC 8252 §7.3).
const codes = [];
const callback = createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  codes.push({ code: url.searchParams.get('code'), iss: url.searchParams.get('iss'), error: url.searchParams.get('error') });
  res.writeHead(200, { 'content-type': 'text/plain' }).end('You can close this window.');
});
await new Promise((resolve) => callback.listen(0, '127.0.0.1', resolve));
const redirectUrl = `http://127.0.0.1:${callback.address().port}/callback`;

class Provider {
  constructor() { this.saved = {}; }
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return { client_name: 'mcpfleet interop: TypeScript SDK', redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' };
  }
  clientInformation() { return this.saved.client; }
  saveClientInformation(client) { this.saved.client = client; step('registered', { client_id: client.client_id }); }
  tokens() { return this.saved.tokens; }
  saveTokens(tokens) { this.saved.tokens = tokens; step('token', { scope: tokens.scope, refresh: Boolean(tokens.refresh_token) }); }
  saveCodeVerifier(verifier) { this.saved.verifier = verifier; }
  codeVerifier() { return this.saved.verifier; }
  saveDiscoveryState(state) { this.saved.discovery = state; }
  invalidateCredentials(which) {  // the SDK drops what the authorization server refused, and starts again
    step('credentials dropped', { which });
    if (which === 'all' || which === 'tokens') delete this.saved.tokens;
    if (which === 'all' || which === 'client') delete this.saved.client;
    if (which === 'all' || which === 'verifier') delete this.saved.verifier;
  }
  discoveryState() { return this.saved.discovery; }
  async redirectToAuthorization(url) {
    this.authorizationUrl = url;
    step('authorization request', {
      resource: url.searchParams.get('resource'), scope: url.searchParams.get('scope'),
      code_challenge_method: url.searchParams.get('code_challenge_method'),
    });
  }
}

// The person, in a fresh browser profile each time: sign in, allow, and the browser lands on the redirect URI.
// (playwright gives the browser a new temporary profile, and each context below is isolated from the others)
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
async function signIn(url, login, password) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(url.toString());
  step('login page', { title: await page.title() });
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  await page.waitForSelector('text=Allow');
  step('consent page', { text: (await page.innerText('main')).replace(/\s+/g, ' ').slice(0, 300) });
  const before = codes.length;
  await page.click('form[action$="/confirm"] button');
  await page.waitForURL((target) => target.toString().startsWith(redirectUrl));
  await context.close();
  const returned = codes[before];
  step('redirected back', { iss: returned.iss, error: returned.error });
  return returned.code;
}

const provider = new Provider();
const connect = async () => {
  const transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider });
  const client = new Client({ name: 'mcpfleet-interop-oauth', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
};

let session;
try {
  session = await connect();
  step('connected without signing in');  // must not happen
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
  step('401 -> discovery -> registration -> authorization request');
  const code = await signIn(provider.authorizationUrl, reader, readerPassword);
  const transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider });
  await transport.finishAuth(code);
  session = await connect();
}
const tools = await session.client.listTools();
step('tools/list', { tools: tools.tools.map((tool) => tool.name).sort() });
const echo = await session.client.callTool({ name: 'echo', arguments: { text: 'hello through OAuth' } });
step('tools/call echo', { isError: echo.isError, text: echo.content[0].text });

// Refresh: the SDK's own refresh call; the authorization server rotates the refresh token, and the used one is dead.
const used = provider.saved.tokens.refresh_token;
const discovery = provider.saved.discovery;
const refreshed = await refreshAuthorization(discovery.authorizationServerUrl, {
  metadata: discovery.authorizationServerMetadata, clientInformation: provider.saved.client, refreshToken: used,
  resource: new URL(serverUrl),
});
provider.saveTokens(refreshed);
step('refreshed', { rotated: refreshed.refresh_token !== used });
try {
  await refreshAuthorization(discovery.authorizationServerUrl, {
    metadata: discovery.authorizationServerMetadata, clientInformation: provider.saved.client, refreshToken: used,
    resource: new URL(serverUrl),
  });
  step('used refresh token accepted again');  // must not happen
} catch (error) {
  step('used refresh token refused', { error: error.constructor.name });
}

// Step-up: the reader's write gets 403 insufficient_scope; the SDK asks for the wider scope; the writer signs in.
try {
  await session.client.callTool({ name: 'write', arguments: { key: 'stepup' } });
  step('write allowed with a read token');  // must not happen
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
  step('403 insufficient_scope -> authorization request for the wider scope');
  const code = await signIn(provider.authorizationUrl, writer, writerPassword);
  await session.transport.finishAuth(code);
  const write = await session.client.callTool({ name: 'write', arguments: { key: 'stepup' } });
  step('tools/call write', { isError: write.isError, text: write.content[0].text });
}

await session.client.close();
await browser.close();
callback.close();
console.log(JSON.stringify({ steps }));
