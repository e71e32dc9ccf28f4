// Regenerates src/generated/ (TypeScript types for the gRPC contract) from proto/.
// The output is never edited by hand; CI regenerates it and fails on any diff (npm run check:generated).
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const bin = path.join(path.dirname(require.resolve('@grpc/proto-loader/package.json')), 'build/bin/proto-loader-gen-types.js');
const outDir = path.join(root, 'src/generated');
rmSync(outDir, { recursive: true, force: true });
// Same options as src/transports/grpc/contract.ts passes to proto-loader at run time.
execFileSync(process.execPath, [bin, 'mechreward/v1/reward.proto', '--keepCase', '--longs=String', '--enums=String', '--defaults', '--oneofs',
  '--grpcLib=@grpc/grpc-js', '--outDir=src/generated', '--importFileExtension=.js', '--includeDirs=proto'],
  { stdio: 'inherit', cwd: root });
