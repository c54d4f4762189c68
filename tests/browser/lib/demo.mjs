// `make demo` for a test: Strongroom on config/demo.toml (the bank's URLs
// moved to this run's port, as `make demo` does), the demo bank, and the
// environment the demo TPP needs.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import https from 'node:https';
import path from 'node:path';
import { bin, freePort, repoRoot, run, startStrongroom } from './strongroom.mjs';

// The demo TPP's registered redirect URI (config/demo.toml).
export const TPP_CALLBACK = 'https://127.0.0.1:8090/callback';

// `uk`: `make demo-uk` instead (config/examples/uk-ob.toml, one listener).
export async function startDemo({ tppCallback = false, uk = false } = {}) {
  const bankPort = await freePort();
  const bankUrl = `http://127.0.0.1:${bankPort}`;
  const cfg = path.join(repoRoot, 'target', `demo-browser-${process.pid}-${bankPort}.toml`);
  const source = uk ? 'config/examples/uk-ob.toml' : 'config/demo.toml';
  writeFileSync(
    cfg,
    readFileSync(path.join(repoRoot, source), 'utf8').replaceAll('http://127.0.0.1:8070/', `${bankUrl}/`),
  );
  const sr = await startStrongroom({
    config: path.relative(repoRoot, cfg),
    env: uk ? { STRONGROOM_MTLS_LISTEN: 'none' } : {},
  });
  const bank = run(bin('demo-bank'), [], {
    env: { DEMO_BANK_LISTEN: `127.0.0.1:${bankPort}`, DEMO_BANK_STRONGROOM: sr.issuer, DEMO_BANK_CA: sr.caFile },
  });
  await waitForHttp(`${bankUrl}/my/consents`);
  // The TPP's redirect URI, answered as the TPP's page would be
  // (Playwright's routing does not see the hops of a redirect chain, so a
  // real listener), with a certificate the dev CA issued for the dev
  // client's callback; the browser ignores the CA.
  let tppPage;
  if (tppCallback) {
    const dir = path.join(sr.dataDir, 'dev-client');
    tppPage = https
      .createServer(
        { cert: readFileSync(path.join(dir, 'callback.pem')), key: readFileSync(path.join(dir, 'callback-key.pem')) },
        (req, res) => {
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
          res.end('<!doctype html><html lang="en"><title>Demo TPP</title><main><h1>Back at the TPP</h1></main></html>');
        },
      )
      .listen(Number(new URL(TPP_CALLBACK).port), '127.0.0.1');
    await once(tppPage, 'listening');
  }
  return {
    sr,
    bank,
    bankUrl,
    tppEnv: {
      DEMO_TPP_ISSUER: sr.issuer,
      DEMO_TPP_MTLS: uk ? sr.issuer : `https://localhost:${sr.mtlsPort}`,
      DEMO_TPP_BANK: bankUrl,
      DEMO_TPP_DATA: sr.dataDir,
    },
    async stop() {
      tppPage?.close();
      await bank.stop();
      await sr.stop();
      rmSync(cfg, { force: true });
    },
  };
}

/** The demo customer signs in at the bank (/my/… pages) if asked to. */
export async function bankSignIn(page) {
  if (await page.getByLabel('Password').count()) {
    await page.getByLabel('Username').fill('mia');
    await page.getByLabel('Password').fill('correct horse');
    await page.getByRole('button', { name: 'Sign in' }).click();
  }
  await page.getByRole('heading', { level: 1 }).waitFor();
}

async function waitForHttp(url, ms = 30_000) {
  const until = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.status < 500) return;
    } catch (e) {
      if (Date.now() > until) throw new Error(`${url}: ${e.cause?.code ?? e.message}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
