// The official conformance suite's authorization-server scenarios (`conformance authorization`, 0.2.x) against the
// platform's authorization server. The suite registers nothing itself: a public client is registered here (dynamic
// registration) with the suite's loopback redirect URI; the suite prints the authorization URL and waits for the
// person, whom Debian's Chromium plays (playwright-core), signing in on the authorization server's own pages.
//
//   node conformance_authorization.mjs ISSUER RESOURCE LOGIN PASSWORD OUTPUT_DIR
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const [issuer, resource, login, password, outputDir] = process.argv.slice(2);
const port = 3000 + Math.floor(Math.random() * 2000);
const redirectUri = `http://127.0.0.1:${port}/callback`;
const registered = await (await fetch(`${issuer}/reg`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ client_name: 'mcpfleet conformance', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'], response_types: ['code'] }),
})).json();

const suite = createRequire(import.meta.url).resolve('conformance-authorization/dist/index.js');
const run = spawn(process.execPath, [suite, 'authorization', '--url', issuer, '--client-id', registered.client_id,
  '--resource', resource, '--port', String(port), '-o', outputDir], { stdio: ['ignore', 'pipe', 'inherit'] });
let output = '';
let signedIn = null;
run.stdout.on('data', (chunk) => {
  output += chunk;
  const url = output.match(new RegExp(`^(${issuer.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/auth\\?\\S+)$`, 'm'));
  if (url && !signedIn) signedIn = signIn(url[1]);
});

async function signIn(url) {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  const page = await browser.newPage();
  await page.goto(url);
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  const home = (target) => target.toString().startsWith(redirectUri);
  // the consent page, unless nothing was asked that needs consent (the suite may ask for no scope)
  await Promise.race([page.waitForURL(home), page.waitForSelector('form[action$="/confirm"] button')]);
  if (!home(page.url())) {
    await page.click('form[action$="/confirm"] button');
    await page.waitForURL(home);
  }
  await browser.close();
}

const code = await new Promise((resolve) => run.on('exit', resolve));
if (signedIn) await signedIn;
process.stdout.write(output);
process.exit(code ?? 1);
