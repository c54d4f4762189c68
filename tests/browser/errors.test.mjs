// What a customer sees when a request cannot be served: the error page, in
// a real browser, under the page's real CSP.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startStrongroom } from './lib/strongroom.mjs';
import { launch, newPage, assertClean, checkPage, gotoExpecting } from './lib/browser.mjs';

describe('error pages', () => {
  let sr;
  let browser;
  before(async () => {
    browser = await launch();
    sr = await startStrongroom();
  });
  after(async () => {
    await browser?.close();
    await sr?.stop();
  });

  for (const width of [320, 1280]) {
    it(`an unknown client gets the error page, not the client's redirect (${width}px)`, async () => {
      const page = await newPage(browser, { width });
      await gotoExpecting(
        page,
        `${sr.issuer}/authorize?client_id=no-such-client&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Ax&redirect_uri=https%3A%2F%2Fevil.example%2Fcb`,
        400,
      );
      assert.equal(new URL(page.url()).origin, sr.issuer, 'the browser stays at the OP');
      await assertVisibleError(page);
      await checkPage(page, 'error-unknown-client');
      assertClean(page);
    });
  }

  it('a path that is not clean text gets the error page with 404', async () => {
    const page = await newPage(browser);
    await gotoExpecting(page, `${sr.issuer}/interaction/%00/login`, 404);
    await assertVisibleError(page);
    await checkPage(page, 'error-not-found');
    assertClean(page);
  });
});

async function assertVisibleError(page) {
  const h1 = page.locator('h1');
  await h1.waitFor();
  assert.match(await h1.innerText(), /\S/);
  const alert = page.getByRole('alert');
  assert.ok(await alert.isVisible(), 'the error is announced (role=alert) and visible');
}
