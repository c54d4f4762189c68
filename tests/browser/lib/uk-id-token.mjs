// The UK walkthrough's front-channel id_token checked by a JOSE library
// nobody here wrote (jose, npm): imported by uk-walkthrough.test.mjs, and
// run as a script by the server test
// uk::the_uk_example_config_serves_the_uk_tpp_walkthrough with a JSON file
// of what the TPP saw ({id_token, code, state, nonce, jwks, issuer,
// client_id, intent}). Verifies the detached signature (PS256) against the
// published JWKS and computes c_hash and s_hash with node:crypto; exits 1
// with the reason otherwise.
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as jose from 'jose';

/** OIDC Core §3.3.2.11: the left half of SHA-256 of the ASCII value. */
const halfHash = (v) => crypto.createHash('sha256').update(v, 'utf8').digest().subarray(0, 16).toString('base64url');

/** Throws unless the front-channel id_token of `input` checks out; its claims. */
export async function verifyFrontChannel(input) {
  const { payload, protectedHeader } = await jose.jwtVerify(input.id_token, jose.createLocalJWKSet(input.jwks), {
    issuer: input.issuer,
    audience: input.client_id,
    algorithms: ['PS256'],
  });
  const fail = (what) => {
    throw new Error(`${what}: ${JSON.stringify(payload)}`);
  };
  if (typeof payload.aud !== 'string') fail('aud is not a single string');
  if (payload.c_hash !== halfHash(input.code)) fail('c_hash');
  if (payload.s_hash !== halfHash(input.state)) fail('s_hash');
  if (payload.nonce !== input.nonce) fail('nonce');
  if (payload.openbanking_intent_id !== input.intent) fail('openbanking_intent_id');
  // OBC's default: sub is the consent id (config/examples/uk-ob.toml [subject]).
  if (payload.sub !== input.intent) fail('sub is not the consent id');
  if (Object.keys(protectedHeader).some((k) => !['alg', 'kid', 'typ'].includes(k))) fail('header');
  return { payload, protectedHeader };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));
    const { payload, protectedHeader } = await verifyFrontChannel(input);
    console.log(`jose: id_token of ${payload.aud} verified (kid ${protectedHeader.kid}), c_hash and s_hash match`);
  } catch (e) {
    console.error(`jose: ${e.message}`);
    process.exit(1);
  }
}
