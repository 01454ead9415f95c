// Headless Chromium (Debian's, driven by playwright-core) uses the gateway's portal as a person would: asks for
// a code for their number, gives a wrong code and then the right one (read from the extension's dev SMS sink),
// sees the balance, redeems a voucher, sees the new balance, looks up a price. Every page is screenshotted and
// checked with axe-core (WCAG 2.1 A/AA and best practices: labels, contrast, landmarks…).
//
//   node portal_browser.mjs PORTAL_URL PHONE SMS_FILE VOUCHER SHOTS_DIR PRICE_NUMBER
//
// Prints one JSON object (what each step saw, axe's violations and the rules it ran per page) and exits 0, or
// prints the failure and exits 1.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(process.env.TINCAN_NODE_MODULES + '/');
const { chromium } = require('playwright-core');
const axePath = require.resolve('axe-core/axe.min.js');

const [portal, phone, smsFile, voucher, shots, priceNumber] = process.argv.slice(2);
const out = { pages: [], axe: {} };

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
  // A phone-sized screen. The portal sends no script; its CSP would stop axe's, so the test bypasses it.
  const context = await browser.newContext({ viewport: { width: 390, height: 780 }, bypassCSP: true });
  const page = await context.newPage();
  const check = async (name) => {
    const file = path.join(shots, name + '.png');
    await page.screenshot({ path: file, fullPage: true });
    out.pages.push({ name, url: page.url(), file, status: lastStatus });
    await page.addScriptTag({ path: axePath });
    const r = await page.evaluate(() =>
      // eslint-disable-next-line no-undef
      axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } }),
    );
    out.axe[name] = {
      violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.html) })),
      passes: r.passes.map((p) => p.id),
    };
  };
  let lastStatus = 0;
  page.on('response', (r) => {
    if (r.request().isNavigationRequest()) lastStatus = r.status();
  });

  await page.goto(portal);
  await page.waitForSelector('input[name=phone]');
  await check('1-sign-in');
  await page.getByLabel('Your phone number').fill(phone);
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Send me a code' }).click()]);
  await page.waitForSelector('input[name=code]');
  await check('2-code');

  // A wrong code first: the page says so and keeps the form.
  await page.getByLabel('The 6-digit code').fill(lastCode() === '000000' ? '111111' : '000000');
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign in' }).click()]);
  out.wrongCode = await page.locator('.error').innerText();
  await check('3-wrong-code');

  await page.getByLabel('The 6-digit code').fill(lastCode());
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign in' }).click()]);
  await page.waitForSelector('#balance');
  out.signedInAs = await page.locator('main > p').first().innerText();
  out.balanceBefore = await page.locator('#balance').innerText();
  await check('4-account');

  await page.getByLabel('Voucher code').fill(voucher.toLowerCase());
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Top up' }).click()]);
  out.notice = await page.locator('.notice').innerText();
  out.balanceAfter = await page.locator('#balance').innerText();
  out.history = await page.locator('tbody tr').allInnerTexts();
  await check('5-topped-up');

  // The same code again: refused, the balance stays.
  await page.getByLabel('Voucher code').fill(voucher);
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Top up' }).click()]);
  out.again = { notice: await page.locator('.notice, .error').first().innerText(), balance: await page.locator('#balance').innerText() };

  await page.getByLabel('Number to call or text').fill(priceNumber);
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Look up the price' }).click()]);
  out.priceVoice = await page.locator('#price-voice').innerText();
  out.priceSms = await page.locator('#price-sms').innerText();
  await check('6-price');

  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign out' }).click()]);
  out.afterSignOut = await page.locator('h1').innerText();
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify({ ...out, error: String(e && e.stack ? e.stack : e) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
