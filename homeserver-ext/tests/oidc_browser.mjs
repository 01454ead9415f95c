// Headless Chromium (Debian's, driven by playwright-core) signs in to Synapse through its SSO login with the
// phone-number provider, as a person on a phone would: the number page, the code page (the code read from the
// extension's dev SMS sink), back to Synapse and on to the Matrix client's URL with a login token. A screenshot
// of every page is kept. The client's URL is not served anywhere: the browser's request for it is answered here
// and its loginToken printed.
//
//   node oidc_browser.mjs START_URL PHONE SMS_FILE SHOTS_DIR CLIENT_URL
//
// Prints {"loginToken": "…", "pages": […]} and exits 0, or prints the failure and exits 1.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(process.env.TINCAN_NODE_MODULES + '/');
const { chromium } = require('playwright-core');

const [startUrl, phone, smsFile, shots, clientUrl] = process.argv.slice(2);
const pages = [];

function lastCode() {
  const lines = fs.readFileSync(smsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const msg = lines.reverse().find((m) => m.to === phone);
  return msg.text.match(/\b(\d{6})\b/)[1];
}

const browser = await chromium.launch({
  executablePath: process.env.TINCAN_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
try {
  // A phone-sized screen; no JavaScript needed by the provider's pages.
  const context = await browser.newContext({ viewport: { width: 390, height: 780 }, javaScriptEnabled: false });
  let landed = null;
  await context.route(clientUrl + '**', (route) => {
    landed = route.request().url();
    route.fulfill({ status: 200, contentType: 'text/html', body: '<p>signed in</p>' });
  });
  const page = await context.newPage();
  const shot = async (name) => {
    const file = path.join(shots, name + '.png');
    await page.screenshot({ path: file, fullPage: true });
    pages.push({ name, url: page.url(), file });
  };

  await page.goto(startUrl);
  await page.waitForSelector('input[name=phone]');
  await shot('1-number');
  await page.fill('input[name=phone]', phone);
  await Promise.all([page.waitForNavigation(), page.click('form[action$="/oauth2/authorize/phone"] button[type=submit]')]);
  await page.waitForSelector('input[name=code]');
  await shot('2-code');

  // A wrong code first: the page says so and keeps the form.
  await page.fill('input[name=code]', lastCode() === '000000' ? '111111' : '000000');
  await Promise.all([page.waitForNavigation(), page.click('form[action$="/oauth2/authorize/code"] button[type=submit]')]);
  await page.waitForSelector('.error');
  await shot('3-wrong-code');

  await page.fill('input[name=code]', lastCode());
  await Promise.all([page.waitForNavigation(), page.click('form[action$="/oauth2/authorize/code"] button[type=submit]')]);
  // Synapse: straight to the client (whitelisted) or a page with a link to it.
  if (!landed) {
    await shot('4-synapse-confirm');
    const link = page.locator(`a[href^="${clientUrl}"]`).first();
    await Promise.all([page.waitForNavigation(), link.click()]);
  }
  if (!landed) throw new Error('never reached the client URL; last page ' + page.url());
  const loginToken = new URL(landed).searchParams.get('loginToken');
  console.log(JSON.stringify({ loginToken, pages }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e), pages }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
