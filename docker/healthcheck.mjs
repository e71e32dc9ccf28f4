// The image's HEALTHCHECK: exit 0 when the sidecar in this container answers GET /readyz with 200 (packs
// loaded, engine warm, not draining), 1 otherwise. Reads the same variables as the server, so a port or TLS
// set by environment is followed; a port set by flag needs MECHREWARD_HTTP_PORT too.
import http from 'node:http';
import https from 'node:https';

const port = Number(process.env.MECHREWARD_HTTP_PORT ?? 8080);
const tls = Boolean(process.env.MECHREWARD_TLS_CERT);
// The check talks to its own process over loopback: the certificate names the service, not 127.0.0.1.
const request = (tls ? https : http).get({ host: '127.0.0.1', port, path: '/readyz', timeout: 2500, rejectUnauthorized: false }, (res) => {
  res.resume();
  process.exit(res.statusCode === 200 ? 0 : 1);
});
request.on('timeout', () => request.destroy(new Error('timeout')));
request.on('error', () => process.exit(1));
