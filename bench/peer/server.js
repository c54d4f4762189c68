// node-oidc-provider configured like Strongroom for `make bench`:
// private_key_jwt (ES256) client authentication, DPoP (ES256) sender
// constraint, PAR, introspection, userinfo, client_credentials, FAPI 2.0
// profile, PS256/ES256 id_tokens, CIBA poll mode with signed requests, its
// development login and consent pages
// (as Strongroom's built-in ones), HTTPS with the same dev certificate, and the
// provider's DEFAULT IN-MEMORY store. Node's cluster module runs one worker
// per core (the peer's best set-up on this machine); each worker has its own
// in-memory store.
//
// Usage: node server.js CONFIG.json   (written by strongroom-bench)
import cluster from 'node:cluster';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

if (cluster.isPrimary) {
  // The provider's signing keys are made once here so every worker signs
  // with the same keys and publishes the same JWKS.
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwks = {
    keys: [
      { ...rsa.privateKey.export({ format: 'jwk' }), kid: 'peer-ps256', alg: 'PS256', use: 'sig' },
      { ...ec.privateKey.export({ format: 'jwk' }), kid: 'peer-es256', alg: 'ES256', use: 'sig' },
    ],
  };
  const n = cfg.workers || os.availableParallelism();
  const workers = [];
  for (let i = 0; i < n; i += 1) {
    workers.push(cluster.fork({ PEER_JWKS: JSON.stringify(jwks) }));
  }
  let stopping = false;
  cluster.on('exit', (w, code) => {
    if (!stopping) {
      console.error(`peer worker ${w.process.pid} exited (${code})`);
      process.exit(1);
    }
  });
  const stop = () => {
    stopping = true;
    for (const w of workers) w.kill('SIGTERM');
    setTimeout(() => process.exit(0), 200);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const { default: Provider } = await import('oidc-provider');
  // CIBA (the bench's `ciba` case): requests awaiting the customer, by
  // binding message, in this worker (the driver keeps a journey on one
  // connection, so on one worker).
  const pendingCiba = new Map();
  const provider = new Provider(cfg.issuer, {
    jwks: JSON.parse(process.env.PEER_JWKS),
    clients: cfg.clients.map((c) => ({
      ...c,
      id_token_signed_response_alg: 'PS256',
    })),
    clientAuthMethods: ['private_key_jwt', 'tls_client_auth'],
    enabledJWA: {
      clientAuthSigningAlgValues: ['ES256', 'PS256'],
      dPoPSigningAlgValues: ['ES256', 'PS256'],
      idTokenSigningAlgValues: ['PS256', 'ES256'],
      requestObjectSigningAlgValues: ['ES256', 'PS256'],
    },
    scopes: ['openid', 'accounts', 'offline_access'],
    // The account behind a login: its sub only (as the bench's user).
    findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
    claims: { openid: ['sub'] },
    pkce: { required: () => true },
    features: {
      // Its built-in login and consent pages (any login is accepted; the
      // bench measures a customer who already has a session, so no
      // password is checked on either server).
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      dPoP: { enabled: true },
      // RFC 8705 on a second listener that asks for a certificate (as
      // Strongroom's mtls_listen; the dev CA's are accepted):
      // tls_client_auth and certificate-bound tokens. The PEM is made once
      // per connection.
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        getCertificate(ctx) {
          const socket = ctx.socket;
          if (socket.benchPem === undefined) {
            const cert = socket.getPeerX509Certificate?.();
            socket.benchPem = cert ? cert.toString() : null;
          }
          return socket.benchPem ?? undefined;
        },
        certificateAuthorized(ctx) {
          return ctx.socket.authorized === true;
        },
        certificateSubjectMatches(ctx, property, expected) {
          if (property !== 'tls_client_auth_subject_dn') return false;
          const cert = ctx.socket.getPeerX509Certificate?.();
          if (!cert) return false;
          const rdns = (dn, sep) => dn.split(sep).map((s) => s.trim()).filter(Boolean).sort().join('\n');
          return rdns(cert.subject, '\n') === rdns(expected, ',');
        },
      },
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: true },
      // CIBA poll mode, signed requests (the client registers
      // backchannel_authentication_request_signing_alg ES256, as at
      // Strongroom). The hint names the account; the "device" is told by
      // remembering the request until POST /bench/ciba/decision approves it.
      // Request objects for the signed CIBA requests (optional elsewhere,
      // as at Strongroom).
      requestObjects: { enabled: true },
      ciba: {
        enabled: true,
        deliveryModes: ['poll'],
        processLoginHint: (ctx, loginHint) => loginHint,
        validateRequestContext: () => {},
        verifyUserCode: () => {},
        triggerAuthenticationDevice: (ctx, request, account, client) => {
          pendingCiba.set(request.params.binding_message, {
            request, accountId: account.accountId, clientId: client.clientId, scope: request.scope,
          });
        },
      },
      fapi: { enabled: true, profile: '2.0' },
    },
    ttl: {
      AccessToken: 300,
      ClientCredentials: 300,
      AuthorizationCode: 60,
      PushedAuthorizationRequest: 60,
    },
    // Its default adapter: the in-memory store (no `adapter` given).
    discovery: {
      mtls_endpoint_aliases: { token_endpoint: `https://localhost:${cfg.mtls_port}/token` },
    },
  });
  provider.on('server_error', (ctx, err) => console.error('peer server_error', err));
  // The bank's decision for the CIBA case: the customer approved the
  // request with this binding message. The provider's own API
  // (backchannelResult with a Grant), behind a route of the bench.
  const callback = provider.callback();
  const decide = async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    const msg = new URLSearchParams(body).get('binding_message');
    const p = pendingCiba.get(msg);
    if (!p) {
      res.writeHead(404).end();
      return;
    }
    pendingCiba.delete(msg);
    const grant = new provider.Grant({ accountId: p.accountId, clientId: p.clientId });
    grant.addOIDCScope(p.scope);
    await grant.save();
    await provider.backchannelResult(p.request, grant, {
      acr: 'urn:openbanking:psd2:sca', amr: ['pwd', 'hwk'], authTime: Math.floor(Date.now() / 1000),
    });
    res.writeHead(204).end();
  };
  const app = (req, res) => {
    if (req.method === 'POST' && req.url === '/bench/ciba/decision') {
      decide(req, res).catch((e) => {
        console.error('peer ciba decision', e);
        res.writeHead(500).end();
      });
      return;
    }
    callback(req, res);
  };
  const cert = fs.readFileSync(cfg.tls.cert);
  const key = fs.readFileSync(cfg.tls.key);
  https.createServer({ cert, key }, app).listen(cfg.port, '127.0.0.1');
  https
    .createServer(
      { cert, key, ca: fs.readFileSync(cfg.tls.ca), requestCert: true, rejectUnauthorized: false },
      provider.callback(),
    )
    .listen(cfg.mtls_port, '127.0.0.1');
}
