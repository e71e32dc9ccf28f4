// The bare grpc-js baseline of the transport benchmark: a unary method that takes the Score request's bytes
// without decoding them and answers a reply of the Score reply's size, with the same grpc-js version and server
// options as `mechreward serve`. What it reaches is what grpc-js itself costs for these messages on this machine.
//   node dist/bench/echo-server.js --reply-bytes 2060 [--socket /tmp/echo.sock]
// prints one JSON line {"port": N, "socket": "..."} once listening, then serves until SIGTERM.
import { parseArgs } from 'node:util';

import * as grpc from '@grpc/grpc-js';

import { grpcServerOptions } from '../src/transports/grpc/server.js';
import { ECHO_METHOD } from './shapes.js';

const raw = (b: Buffer): Buffer => b;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'reply-bytes': { type: 'string', default: '2060' }, socket: { type: 'string', default: '' } } });
  const reply = Buffer.alloc(Number(values['reply-bytes']), 7);
  const server = new grpc.Server(grpcServerOptions(512 * 1024 * 1024));
  const definition: grpc.ServiceDefinition = {
    Echo: { path: ECHO_METHOD, requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
  };
  server.addService(definition, { Echo: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => done(null, reply) });
  const bind = (address: string) => new Promise<number>((resolve, reject) => server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
  const port = await bind('127.0.0.1:0');
  if (values.socket) await bind(`unix:${values.socket}`);
  console.log(JSON.stringify({ port, socket: values.socket }));
  process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
