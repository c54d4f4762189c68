// `make demo-uk` + `make demo-tpp-uk` as CI runs them: Strongroom on
// config/examples/uk-ob.toml (one listener) beside the demo bank, the test
// directory's UK material (strongroom-directory issue --uk), and demo-tpp
// --uk --auto doing what Open Banking Connector does, signed and encrypted;
// the front-channel id_token it saw is then verified here by jose against
// the published JWKS, with c_hash and s_hash from node:crypto.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bin, repoRoot, run } from './lib/strongroom.mjs';
import { startDemo } from './lib/demo.mjs';
import { verifyFrontChannel } from './lib/uk-id-token.mjs';

describe('the UK TPP walkthrough, its id_token checked by jose', () => {
  let demo;
  let dir;
  before(async () => {
    demo = await startDemo({ uk: true });
    dir = mkdtempSync(path.join(tmpdir(), 'strongroom-uk-tpp-'));
    const issue = run(bin('strongroom-directory'), [
      'issue', '--uk', '--out', dir, '--data', demo.sr.dataDir,
      '--directory-key', path.join(repoRoot, 'config/demo-directory-key.pem'),
      '--software-id', 'tppUkDemo01', '--org-id', '0015800001041REAAY', '--org-name', 'Demo UK TPP Ltd',
      '--redirect-uri', 'https://tpp.example/uk/callback', '--role', 'AISP',
    ]);
    const { code } = await issue.exited;
    assert.equal(code, 0, issue.out.stderr);
  });
  after(async () => {
    await demo?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const encrypt of [false, true]) {
    it(`the hybrid flow with ${encrypt ? 'an encrypted' : 'a signed'} request object by value`, async () => {
      const out = path.join(dir, `front-${encrypt}.json`);
      const args = ['--uk', '--auto', '--directory', dir, '--front-channel-out', out];
      if (encrypt) args.push('--encrypt');
      const tpp = run(bin('demo-tpp'), args, { env: demo.tppEnv });
      const { code } = await tpp.exited;
      assert.equal(code, 0, `${tpp.out.stdout}\n${tpp.out.stderr}`);
      assert.match(tpp.out.stdout, /OK: .* registered, consent .* authorised, accounts read with the bound token/);
      const input = JSON.parse(readFileSync(out, 'utf8'));
      const { payload, protectedHeader } = await verifyFrontChannel(input);
      assert.equal(protectedHeader.alg, 'PS256');
      assert.equal(payload.acr, 'urn:openbanking:psd2:sca');
      assert.equal(payload.openbanking_intent_id, input.intent);
      // A tampered state no longer matches s_hash.
      await assert.rejects(verifyFrontChannel({ ...input, state: `${input.state}x` }), /s_hash/);
    });
  }
});
