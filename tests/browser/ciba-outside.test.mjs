// The decoupled journey driven by a CIBA client nobody here wrote:
// openid-client (panva, npm) initiates and polls, jose signs the request
// object, undici carries the client certificate, openssl issues that
// certificate from the dev CA. The customer approves on the demo bank's
// phone page in headless Chromium. The client is the demo TPP of
// config/demo.toml (tls_client_auth, certificate-bound tokens, FAPI-CIBA
// signed requests with ES256), exactly as registered there.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as client from 'openid-client';
import * as jose from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';
import { repoRoot } from './lib/strongroom.mjs';
import { launch, newPage, assertClean } from './lib/browser.mjs';
import { bankSignIn, startDemo } from './lib/demo.mjs';

const CLIENT_ID = 'demo-tpp';

/** A client certificate for the demo TPP's registered subject, from the dev CA. */
function issueCertificate(dataDir) {
  const out = (name) => path.join(dataDir, `outside-${name}`);
  const run = (...args) => execFileSync('openssl', args, { stdio: 'pipe' });
  run('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', out('key.pem'));
  run('req', '-new', '-key', out('key.pem'), '-subj', '/O=Demo TPP/CN=demo-tpp', '-out', out('csr.pem'));
  const ext = out('ext.cnf');
  execFileSync('sh', ['-c', `printf 'extendedKeyUsage=clientAuth\\nbasicConstraints=CA:FALSE\\n' > '${ext}'`]);
  run('x509', '-req', '-in', out('csr.pem'), '-CA', path.join(dataDir, 'dev-ca.pem'),
    '-CAkey', path.join(dataDir, 'dev-ca-key.pem'), '-CAcreateserial', '-days', '1',
    '-extfile', ext, '-out', out('cert.pem'));
  return { cert: readFileSync(out('cert.pem')), key: readFileSync(out('key.pem')) };
}

describe('CIBA with an outside client (openid-client)', () => {
  let demo;
  let browser;
  let config;
  let signingKey;
  let bankFetch;
  const tokenErrors = [];
  before(async () => {
    browser = await launch();
    demo = await startDemo();
    const { cert, key } = issueCertificate(demo.sr.dataDir);
    const ca = readFileSync(demo.sr.caFile);
    const agent = new Agent({ connect: { cert, key, ca } });
    // Every token-endpoint answer's error code, as the library saw it.
    const mtlsFetch = async (url, options) => {
      const r = await undiciFetch(url, { ...options, dispatcher: agent });
      if (String(url).endsWith('/token') && r.status === 400) {
        tokenErrors.push((await r.clone().json()).error);
      }
      return r;
    };
    config = await client.discovery(
      new URL(demo.sr.issuer),
      CLIENT_ID,
      { use_mtls_endpoint_aliases: true },
      client.TlsClientAuth(),
      { [client.customFetch]: mtlsFetch },
    );
    config[client.customFetch] = mtlsFetch;
    bankFetch = (url, options) => undiciFetch(url, options);
    signingKey = await jose.importPKCS8(
      readFileSync(path.join(repoRoot, 'config/demo-tpp-request-signing.pem'), 'utf8'),
      'ES256',
    );
  });
  after(async () => {
    await browser?.close();
    await demo?.stop();
  });

  /** An account-access consent at the bank, as the TPP creates it first. */
  async function consent() {
    const cc = await client.clientCredentialsGrant(config, { scope: 'accounts' });
    const r = await bankFetch(`${demo.bankUrl}/open-banking/v3.1/aisp/account-access-consents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${cc.access_token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        Data: { Permissions: ['ReadAccountsBasic', 'ReadBalances'], ExpirationDateTime: '2099-01-01T00:00:00+00:00' },
        Risk: {},
      }),
    });
    assert.equal(r.status, 201, await r.clone().text());
    return (await r.json()).Data.ConsentId;
  }

  /** The signed authentication request (FAPI-CIBA), naming the consent. */
  function request(consentId, binding) {
    const { issuer } = config.serverMetadata();
    return new jose.SignJWT({
      scope: 'openid accounts',
      login_hint: 'mia',
      binding_message: binding,
      claims: {
        id_token: {
          openbanking_intent_id: { value: consentId, essential: true },
          acr: { essential: true, values: ['urn:openbanking:psd2:sca'] },
        },
      },
    })
      .setProtectedHeader({ alg: 'ES256', kid: 'demo-tpp-ciba' })
      .setIssuer(CLIENT_ID)
      .setAudience(issuer)
      .setIssuedAt()
      .setNotBefore('0s')
      .setExpirationTime('5m')
      .setJti(crypto.randomUUID())
      .sign(signingKey);
  }

  it('initiates, polls through authorization_pending, the customer approves in Chromium, tokens bound to the certificate carry the consent', async () => {
    const consentId = await consent();
    const binding = `OC-${Math.floor(Math.random() * 1e6)}`;
    const page = await newPage(browser, { width: 390 });
    await page.goto(`${demo.bankUrl}/my/phone`);
    await bankSignIn(page);

    const started = await client.initiateBackchannelAuthentication(config, { request: await request(consentId, binding) });
    assert.ok(started.auth_req_id.length >= 27, 'at least 160 bits');
    assert.ok(started.expires_in > 0);

    // The library's own polling (it honours interval and slow_down) runs
    // while the customer answers on the phone.
    tokenErrors.length = 0;
    const polled = client.pollBackchannelAuthenticationGrant(config, started);
    const card = page.locator('li', { hasText: binding });
    await card.waitFor({ timeout: 20_000 });
    assert.match(await card.innerText(), /Demo TPP/);
    // Not before the library has been told to wait at least once.
    for (let i = 0; i < 200 && !tokenErrors.includes('authorization_pending'); i += 1) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(tokenErrors.includes('authorization_pending'), `token endpoint said ${tokenErrors}`);
    await card.getByRole('button', { name: /^Approve/ }).click();
    const tokens = await polled;

    assert.equal(tokens.token_type.toLowerCase(), 'bearer');
    const claims = tokens.claims();
    assert.equal(claims.iss, demo.sr.issuer);
    assert.equal(claims.aud, CLIENT_ID);
    assert.equal(claims.openbanking_intent_id, consentId, 'the consent id in the id_token');
    assert.equal(claims['urn:openid:params:jwt:claim:auth_req_id'], started.auth_req_id);
    assert.equal(claims.acr, 'urn:openbanking:psd2:sca');
    // The id_token's signature, against the published JWKS, by jose.
    const jwks = jose.createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri), {
      [jose.customFetch]: (url, options) => undiciFetch(url, { ...options, dispatcher: new Agent({ connect: { ca: readFileSync(demo.sr.caFile) } }) }),
    });
    await jose.jwtVerify(tokens.id_token, jwks, { issuer: demo.sr.issuer, audience: CLIENT_ID });

    // Introspection (the same client, mTLS): active, bound to the
    // certificate, with the consent.
    const info = await client.tokenIntrospection(config, tokens.access_token);
    assert.equal(info.active, true);
    assert.equal(info.consent_id, consentId);
    assert.ok(info.cnf?.['x5t#S256'], 'certificate-bound');

    // The same auth_req_id again: invalid_grant, and the tokens stay valid.
    await assert.rejects(
      client.pollBackchannelAuthenticationGrant(config, started),
      (e) => e.error === 'invalid_grant',
    );
    assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, true);
    assertClean(page);
  });

  it('a denial on the phone ends the library poll with access_denied', async () => {
    const consentId = await consent();
    const binding = `OD-${Math.floor(Math.random() * 1e6)}`;
    const page = await newPage(browser, { width: 1280 });
    await page.goto(`${demo.bankUrl}/my/phone`);
    await bankSignIn(page);
    const started = await client.initiateBackchannelAuthentication(config, { request: await request(consentId, binding) });
    const polled = client.pollBackchannelAuthenticationGrant(config, started);
    const card = page.locator('li', { hasText: binding });
    await card.waitFor({ timeout: 20_000 });
    await card.getByRole('button', { name: /^Deny/ }).click();
    await assert.rejects(polled, (e) => e.error === 'access_denied');
    assertClean(page);
  });
});
