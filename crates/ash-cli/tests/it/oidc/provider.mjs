// Test fixture: a real OpenID Provider (npm `oidc-provider` 9.13.3, by panva)
// on loopback, issuing JWT access tokens via the client_credentials grant.
//
// Install (once, outside the repository):
//   mkdir -p $HOME/.cache/ash/oidc-provider && cd $HOME/.cache/ash/oidc-provider
//   npm install --no-audit --no-fund --save-exact oidc-provider@9.13.3
//
// Run:
//   ASH_OIDC_MODULES=$HOME/.cache/ash/oidc-provider/node_modules PORT=0 node provider.mjs
//
// Module resolution: ESM `import` ignores NODE_PATH, so the library is located
// with `createRequire` rooted in the node_modules dir named by ASH_OIDC_MODULES
// (falling back to the first NODE_PATH entry) and then loaded with a dynamic
// import() of the resolved file URL.
//
// Environment:
//   PORT       port on 127.0.0.1 to listen on; 0 (default) = any free port.
//   KEYS_FILE  optional. If the file exists, the private JWKS is loaded from it;
//              if not, freshly generated keys are written there. Without it,
//              every start generates new keys (restart = key rotation).
//
// Output: once listening, exactly one line on stdout:
//   {"issuer":"http://127.0.0.1:<port>","port":<port>}
// Everything else (including the library's notices) goes to stderr.
//
// Clients (client_credentials only, auth method client_secret_post, i.e.
// client_id/client_secret in the form body):
//   rs-client / rs-secret  -> access token JWT signed RS256
//   es-client / es-secret  -> access token JWT signed ES256
// Both tokens: typ "at+jwt", aud "urn:ash:api", lifetime 300 s. The `resource`
// parameter is optional (defaults to urn:ash:api); any other value is
// rejected with invalid_target.

import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

// The library prints notices with console.info (stdout); keep stdout clean for
// the single JSON readiness line.
console.info = console.log = (...args) => console.error(...args);

const modulesDir = process.env.ASH_OIDC_MODULES
  || (process.env.NODE_PATH || '').split(path.delimiter).find(Boolean);
if (!modulesDir) {
  console.error('set ASH_OIDC_MODULES (or NODE_PATH) to the node_modules dir holding oidc-provider');
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(modulesDir), 'noop.js'));
const { default: Provider, errors } = await import(
  pathToFileURL(require.resolve('oidc-provider')).href
);

const AUDIENCE = 'urn:ash:api';
const TTL = 300;
// client_id -> JWS alg of its access tokens.
const CLIENT_ALG = { 'rs-client': 'RS256', 'es-client': 'ES256' };

// Private JWK with kid/alg/use for a freshly generated key pair.
function generateJwk(type, options, alg) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`, alg, use: 'sig' };
}

function loadOrGenerateJwks() {
  const file = process.env.KEYS_FILE;
  if (file && fs.existsSync(file)) {
    console.error(`loading signing keys from ${file}`);
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  }
  const jwks = {
    keys: [
      generateJwk('rsa', { modulusLength: 2048 }, 'RS256'),
      generateJwk('ec', { namedCurve: 'P-256' }, 'ES256'),
    ],
  };
  if (file) {
    fs.writeFileSync(file, JSON.stringify(jwks), { mode: 0o600 });
    console.error(`wrote signing keys to ${file}`);
  }
  return jwks;
}

// Listen first so the issuer can carry the actual port, then attach the provider.
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(process.env.PORT || 0), '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const client = (id, secret) => ({
  client_id: id,
  client_secret: secret,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_post',
});

const provider = new Provider(issuer, {
  jwks: loadOrGenerateJwks(),
  clients: [client('rs-client', 'rs-secret'), client('es-client', 'es-secret')],
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // Used when the token request carries no `resource` parameter.
      defaultResource: () => AUDIENCE,
      getResourceServerInfo: (ctx, resourceIndicator, requestingClient) => {
        if (resourceIndicator !== AUDIENCE) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: 'api',
          audience: AUDIENCE,
          accessTokenTTL: TTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: CLIENT_ALG[requestingClient.clientId] || 'RS256' } },
        };
      },
    },
  },
  ttl: { ClientCredentials: TTL },
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));
// Static clients are validated lazily; load them now so bad metadata fails at
// startup rather than on the first token request.
for (const id of Object.keys(CLIENT_ALG)) {
  await provider.Client.find(id);
}
server.on('request', provider.callback());

process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
console.error(`oidc-provider listening, discovery at ${issuer}/.well-known/openid-configuration`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
