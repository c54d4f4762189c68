// The FAPI 1.0 hybrid flow checked by a JOSE library nobody here wrote:
// jose (panva, npm) signs the request object a UK TPP sends by value (PS256,
// only `kid` in the header, no PAR, no PKCE) and verifies the id_token of the
// authorization response against the published JWKS, with c_hash and s_hash
// computed here by node:crypto. Strongroom runs with profile = "uk-ob" from a
// configuration written for this test; login and consent are its built-in
// HTML forms, posted as a browser would.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as jose from 'jose';
import { Agent, fetch } from 'undici';
import { repoRoot, startStrongroom } from './lib/strongroom.mjs';
import { launch, newPage, assertClean } from './lib/browser.mjs';

const CLIENT_ID = 'tpp-uk-outside';
const REDIRECT_URI = 'https://tpp.example/cb';
const INTENT = 'intent-outside-1';
const SCA = 'urn:openbanking:psd2:sca';

/** OIDC Core §3.3.2.11: the left half of SHA-256 of the ASCII value. */
const halfHash = (v) => crypto.createHash('sha256').update(v, 'utf8').digest().subarray(0, 16).toString('base64url');

describe('the hybrid flow with an outside JOSE library (jose)', () => {
  let sr;
  let dir;
  let key;
  let agent;
  before(async () => {
    const { privateKey, publicKey } = await jose.generateKeyPair('PS256', { extractable: true });
    key = privateKey;
    const jwk = { ...(await jose.exportJWK(publicKey)), kid: 'tpp-sig', use: 'sig', alg: 'PS256' };
    dir = mkdtempSync(path.join(tmpdir(), 'strongroom-hybrid-'));
    const config = path.join(dir, 'uk.toml');
    writeFileSync(config, `
issuer = "https://localhost:8443"
profile = "uk-ob"
dev_mode = true

[login]
acr = "${SCA}"

[[users]]
username = "alice"
password = "wonderland"
sub = "sub-alice"

[[clients]]
client_id = "${CLIENT_ID}"
redirect_uris = ["${REDIRECT_URI}"]
grant_types = ["authorization_code"]
response_types = ["code id_token"]
scope = "openid accounts"
token_endpoint_auth_method = "private_key_jwt"
token_endpoint_auth_signing_alg = "PS256"
jwks = { keys = [{ ${Object.entries(jwk).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(', ')} }] }
`);
    sr = await startStrongroom({ config: path.relative(repoRoot, config) });
    agent = new Agent({ connect: { ca: readFileSync(sr.caFile) } });
  });
  after(async () => {
    await sr?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A browser step: no redirects followed, the cookies carried by hand. */
  const cookies = new Map();
  async function step(url, { method = 'GET', form } = {}) {
    const r = await fetch(new URL(url, sr.issuer), {
      method,
      redirect: 'manual',
      dispatcher: agent,
      headers: {
        cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; '),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      body: form ? new URLSearchParams(form).toString() : undefined,
    });
    for (const c of r.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      cookies.set(pair.slice(0, i), pair.slice(i + 1));
    }
    return r;
  }

  /** The signed request object a UK TPP sends by value. */
  async function requestObject({ state, nonce, responseMode }) {
    const now = Math.floor(Date.now() / 1000);
    return new jose.SignJWT({
      client_id: CLIENT_ID,
      response_type: 'code id_token',
      redirect_uri: REDIRECT_URI,
      scope: 'openid accounts',
      state,
      nonce,
      max_age: 86400,
      ...(responseMode ? { response_mode: responseMode } : {}),
      claims: {
        id_token: {
          openbanking_intent_id: { value: INTENT, essential: true },
          acr: { essential: true, values: [SCA, 'urn:openbanking:psd2:ca'] },
        },
        userinfo: { openbanking_intent_id: { value: INTENT, essential: true } },
      },
    })
      .setProtectedHeader({ alg: 'PS256', kid: 'tpp-sig' })
      .setIssuer(CLIENT_ID)
      .setAudience(sr.issuer)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + 300)
      .setJti(crypto.randomUUID())
      .sign(key);
  }

  /** The `/authorize` URL carrying `request` by value. */
  function authorizeUrl(request) {
    const authorize = new URL('/authorize', sr.issuer);
    authorize.search = new URLSearchParams({
      client_id: CLIENT_ID,
      response_type: 'code id_token',
      scope: 'openid accounts',
      request,
    }).toString();
    return authorize;
  }

  it('returns code, id_token, state and iss in the fragment, the id_token a detached signature', async () => {
    const state = `${crypto.randomBytes(16).toString('base64url')}&=+/ ~`;
    const nonce = crypto.randomBytes(16).toString('base64url');
    const request = await requestObject({ state, nonce });
    const authorize = authorizeUrl(request);
    let r = await step(authorize);
    assert.equal(r.status, 303, await r.text());
    const login = r.headers.get('location');
    assert.match(login, /\/login$/);
    r = await step(login, { method: 'POST', form: { username: 'alice', password: 'wonderland', action: 'login' } });
    assert.equal(r.status, 303, await r.text());
    const consent = r.headers.get('location');
    r = await step(consent, { method: 'POST', form: { action: 'approve' } });
    assert.equal(r.status, 303, await r.text());

    const back = new URL(r.headers.get('location'));
    assert.equal(`${back.origin}${back.pathname}`, REDIRECT_URI);
    assert.equal(back.search, '', 'nothing in the query');
    const f = new URLSearchParams(back.hash.slice(1));
    assert.deepEqual([...f.keys()].sort(), ['code', 'id_token', 'iss', 'state']);
    assert.equal(f.get('state'), state, 'state byte for byte');
    assert.equal(f.get('iss'), sr.issuer);

    const jwks = jose.createRemoteJWKSet(new URL('/jwks', sr.issuer), {
      [jose.customFetch]: (url, options) => fetch(url, { ...options, dispatcher: agent }),
    });
    const { payload, protectedHeader } = await jose.jwtVerify(f.get('id_token'), jwks, {
      issuer: sr.issuer,
      audience: CLIENT_ID,
      algorithms: ['PS256'],
      requiredClaims: ['exp', 'iat', 'auth_time', 'nonce', 'sub', 'c_hash', 's_hash'],
    });
    assert.equal(protectedHeader.alg, 'PS256');
    assert.equal(payload.aud, CLIENT_ID, 'aud a single string');
    assert.equal(payload.c_hash, halfHash(f.get('code')));
    assert.equal(payload.s_hash, halfHash(state));
    assert.equal(payload.nonce, nonce);
    assert.equal(payload.acr, SCA);
    assert.equal(payload.openbanking_intent_id, INTENT);
    assert.equal(payload.sub, 'sub-alice');
  });

  // The form_post response mode (OAuth 2.0 Form Post Response Mode) as a
  // person's browser runs it: the page posts itself to the client with its
  // one inline script, allowed by the page's CSP hash (a CSP violation
  // would be a console error, which assertClean refuses). The client's
  // redirect URI is answered here.
  {
    it('form_post in Chromium posts code, id_token, state and iss to the client by its script', async () => {
      const browser = await launch();
      try {
        const page = await newPage(browser);
        let posted;
        await page.route(`${REDIRECT_URI}**`, async (route) => {
          posted = { method: route.request().method(), body: route.request().postData() ?? '' };
          await route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><html lang="en"><title>TPP</title><h1>TPP</h1></html>' });
        });
        const state = crypto.randomBytes(12).toString('base64url');
        const nonce = crypto.randomBytes(12).toString('base64url');
        await page.goto(authorizeUrl(await requestObject({ state, nonce, responseMode: 'form_post' })).href);
        await page.getByLabel(/username/i).fill('alice');
        await page.getByLabel(/password/i).fill('wonderland');
        await page.getByRole('button', { name: /sign in/i }).click();
        await page.getByRole('button', { name: /approve|allow/i }).click();
        await page.waitForURL((u) => u.href.startsWith(REDIRECT_URI), { timeout: 15_000 });
        assert.equal(posted?.method, 'POST');
        const f = new URLSearchParams(posted.body);
        assert.deepEqual([...f.keys()].sort(), ['code', 'id_token', 'iss', 'state']);
        assert.equal(f.get('state'), state);
        assert.equal(f.get('iss'), sr.issuer);
        const jwks = jose.createRemoteJWKSet(new URL('/jwks', sr.issuer), {
          [jose.customFetch]: (url, options) => fetch(url, { ...options, dispatcher: agent }),
        });
        const { payload } = await jose.jwtVerify(f.get('id_token'), jwks, { issuer: sr.issuer, audience: CLIENT_ID });
        assert.equal(payload.c_hash, halfHash(f.get('code')));
        assert.equal(payload.s_hash, halfHash(state));
        assert.equal(payload.nonce, nonce);
        assertClean(page);
      } finally {
        await browser.close();
      }
    });
  }
});
