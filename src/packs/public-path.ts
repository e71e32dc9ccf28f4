// API answers never carry absolute paths of the server's machine: a path inside the packs directory is shown
// relative to it (`smollm2-arith/sae/cfg.json`), any other absolute path by its last component only
// (`<outside>/weights.safetensors`). Logs keep the full paths.
import path from 'node:path';

const ABSOLUTE = /(?<![\w.])\/[^\s'"(),;]+/g;

export function hidePaths(message: string, packsDir: string): string {
  const root = path.resolve(packsDir);
  return message.replace(ABSOLUTE, (p) => {
    const rel = path.relative(root, p);
    if (rel === '') return '<packs>';
    if (!rel.startsWith('..') && !path.isAbsolute(rel)) return rel;
    return `<outside>/${path.basename(p)}`;
  });
}
