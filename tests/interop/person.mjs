// A person at the authorization server's pages, in Debian's Chromium (playwright-core): open the authorization URL,
// sign in, allow, and print where the browser was sent back (the client's redirect URI, with the code).
//
//   node person.mjs AUTHORIZATION_URL REDIRECT_URI LOGIN PASSWORD
import { chromium } from 'playwright-core';

const [authorizationUrl, redirectUri, login, password] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
const page = await browser.newPage();
let returned = null;
// The client's redirect URI answers here (a desktop client's loopback listener would): the browser lands on it.
await page.route((url) => url.toString().startsWith(redirectUri), async (route) => {
  returned = route.request().url();
  await route.fulfill({ status: 200, contentType: 'text/plain', body: 'You can close this window.' });
});
await page.goto(authorizationUrl);
await page.fill('input[name=login]', login);
await page.fill('input[name=password]', password);
await page.click('button[type=submit]');
await Promise.race([page.waitForURL((url) => url.toString().startsWith(redirectUri)),
  page.waitForSelector('form[action$="/confirm"] button')]);
if (!returned) {
  await page.click('form[action$="/confirm"] button');
  await page.waitForURL((url) => url.toString().startsWith(redirectUri));
}
await browser.close();
console.log(returned);
