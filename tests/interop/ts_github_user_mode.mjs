// Per-person GitHub identity, driven by clients we did not write: the TypeScript MCP SDK client (declaring URL-mode
// elicitation) calls the GitHub server as each person; the server answers -32042 with its connect page, which the
// SDK surfaces as UrlElicitationRequiredError; Debian's Chromium (playwright-core, never a browser download) is the
// person's browser: it opens the URL, signs in at the authorization server, allows this client, and authorizes the
// App on the fake GitHub's consent page. The client then retries its call, which GitHub records as the person's.
//
//   node ts_github_user_mode.mjs SERVER_URL PEOPLE_JSON
//   PEOPLE_JSON: [{"login", "password", "token", "github", "link": true|false}, ...]
//
// Prints one JSON report per person.
import { chromium } from 'playwright-core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [serverUrl, peopleJson] = process.argv.slice(2);
const people = JSON.parse(peopleJson);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});

async function connect(token) {
  const transport = new StreamableHTTPClientTransport(new URL(serverUrl), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: 'mcpfleet-interop-github-user', version: '1.0.0' },
    { capabilities: { elicitation: { form: {}, url: {} } } });
  await client.connect(transport);
  return client;
}

const createIssue = (client, login) => client.callTool({
  name: 'create_issue', arguments: { owner: 'octo', repo: 'hello', title: `Filed by ${login} through the TypeScript SDK` },
});

// The person's browser, a fresh profile: the connect page, the sign-in, the consent to this client, GitHub's page.
async function linkInBrowser(url, person) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = [];
  await page.goto(url);
  seen.push(await page.title());
  await page.fill('input[name=login]', person.login);
  await page.fill('input[name=password]', person.password);
  await page.click('button[type=submit]');
  await page.waitForSelector('form[action$="/confirm"] button');
  seen.push(await page.title());
  await page.click('form[action$="/confirm"] button');
  await page.waitForSelector('button[value=allow]');
  seen.push(await page.title());
  await page.click('button[value=allow]');
  await page.waitForSelector('text=Authorize the GitHub App');
  seen.push(await page.title());
  await page.fill('input[name=login]', person.github);
  await page.click('button[type=submit]');
  await page.waitForSelector('h1:text("Linked")');
  seen.push(await page.title());
  const text = (await page.innerText('main')).replace(/\s+/g, ' ');
  await context.close();
  return { pages: seen, text };
}

const reports = [];
for (const person of people) {
  const report = { login: person.login };
  const client = await connect(person.token);
  try {
    await createIssue(client, person.login);
    report.first = 'served without linking';  // must not happen
  } catch (error) {
    report.first = error.constructor.name;
    const [elicitation] = error.elicitations ?? [];
    report.elicitation = elicitation ? { mode: elicitation.mode, url: elicitation.url } : null;
    if (person.link && elicitation) {
      report.browser = await linkInBrowser(elicitation.url, person);
      const retried = await createIssue(client, person.login);
      report.retried = { isError: Boolean(retried.isError), content: retried.structuredContent };
    }
  }
  await client.close();
  reports.push(report);
}
await browser.close();
console.log(JSON.stringify(reports));
