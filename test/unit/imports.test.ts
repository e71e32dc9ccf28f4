// docs/architecture.md's import rules, checked against the source: every relative import in src/ stays inside
// the table there, imports the table marks "(types)" are `import type` only, and no file reaches itself again
// through its imports (no circle, type-only imports included: a circle of types is still a tangle to read).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { REPO_ROOT } from '../helpers/fixtures.js';

const SRC = path.join(REPO_ROOT, 'src');

interface Edge {
  from: string; // file, relative to the source root
  to: string;
  typeOnly: boolean;
}
type Rules = Map<string, Map<string, boolean>>; // module → allowed module → type-only?

/** Every .ts file under `root`, relative to it. */
function sourceFiles(root: string, dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(root, full);
    return e.name.endsWith('.ts') ? [path.relative(root, full)] : [];
  });
}

// `import … from './x.js'`, `import type …`, `export … from`, and bare `import './x.js'`; across lines.
const IMPORT = /^\s*(import|export)\s+(type\s+)?([^;'"]*?from\s+)?['"](\.{1,2}\/[^'"]+)['"]/gm;

function importsOf(root: string): Edge[] {
  return sourceFiles(root).flatMap((file) => {
    const text = readFileSync(path.join(root, file), 'utf8');
    return [...text.matchAll(IMPORT)].map((m) => {
      const to = path.normalize(path.join(path.dirname(file), m[4]!)).replace(/\.js$/, '.ts');
      // `import { type A, type B } from` is type-only too.
      const names = m[3] ? /\{([^}]*)\}/.exec(m[3])?.[1] : undefined;
      const allTypes = names !== undefined && names.split(',').map((n) => n.trim()).filter(Boolean).every((n) => n.startsWith('type '));
      return { from: file, to, typeOnly: Boolean(m[2]) || allTypes };
    });
  });
}

/** The module a file belongs to: its top-level folder, or the file's name without `.ts`. */
const moduleOf = (file: string) => (file.includes(path.sep) ? file.split(path.sep)[0]! : file.replace(/\.ts$/, ''));

/** The "## Import rules" table of a markdown text; `*` allows anything (the composition root). */
function readRules(markdown: string): Rules {
  const section = markdown.split('## Import rules')[1]?.split('\n## ')[0];
  assert.ok(section, 'an "## Import rules" section');
  const table: Rules = new Map();
  for (const line of section.split('\n')) {
    const cells = /^\| `([\w-]+)` \| (.*) \|$/.exec(line.trim());
    if (!cells) continue;
    const allowed = new Map<string, boolean>();
    for (const item of cells[2]!.split(',').map((s) => s.trim()).filter((s) => s && s !== '—')) {
      const parsed = /^`([\w*-]+)`( \(types\))?$/.exec(item);
      assert.ok(parsed, `import rules: cannot read "${item}" in the row of ${cells[1]}`);
      allowed.set(parsed[1]!, Boolean(parsed[2]));
    }
    table.set(cells[1]!, allowed);
  }
  return table;
}

function brokenRules(edges: Edge[], rules: Rules): string[] {
  const broken: string[] = [];
  for (const e of edges) {
    const from = moduleOf(e.from);
    const to = moduleOf(e.to);
    const allowed = rules.get(from);
    if (from === to || allowed?.has('*')) continue;
    if (!allowed?.has(to)) broken.push(`${e.from} imports ${e.to}: ${from} may not import ${to}`);
    else if (allowed.get(to) && !e.typeOnly) broken.push(`${e.from} imports ${e.to} for values: ${from} may import ${to} types only`);
  }
  return broken;
}

function circles(edges: Edge[]): string[] {
  const graph = new Map<string, string[]>();
  for (const e of edges) graph.set(e.from, [...(graph.get(e.from) ?? []), e.to]);
  const state = new Map<string, 'open' | 'done'>();
  const found: string[] = [];
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next].join(' -> '));
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file);
  return found;
}

const architectureRules = () => readRules(readFileSync(path.join(REPO_ROOT, 'docs', 'architecture.md'), 'utf8'));

test('every module of src/ has a row in docs/architecture.md\'s import rules, and every row a module', () => {
  const modules = new Set(sourceFiles(SRC).map(moduleOf));
  assert.deepEqual([...architectureRules().keys()].sort(), [...modules].sort());
});

test('imports between modules of src/ follow docs/architecture.md\'s import rules', () => {
  const edges = importsOf(SRC);
  assert.ok(edges.length > 200, `the reader found ${edges.length} imports in src/`);
  assert.deepEqual(brokenRules(edges, architectureRules()), []);
});

test('no import circles between files of src/', () => {
  assert.deepEqual(circles(importsOf(SRC)), []);
});

test('the checks find a circle, a forbidden import and a value import of types-only module in a made-up tree', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-imports-'));
  try {
    const write = (file: string, text: string) => {
      mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
      writeFileSync(path.join(root, file), text);
    };
    write('core/a.ts', "import { b } from './b.js';\nimport type {\n  T,\n} from '../transports/t.js';\nexport const a = 1;\n");
    write('core/b.ts', "export { a as b } from './a.js';\n");
    write('monitor/m.ts', "import { type X, type Y } from '../core/a.js';\nimport { c } from '../errors.js';\n");
    write('transports/t.ts', "import { a } from '../core/a.js';\n");
    write('errors.ts', 'export const c = 1;\n');
    const rules = readRules('## Import rules\n| `core` | `errors` |\n| `monitor` | `core` (types), `errors` |\n| `transports` | `core` (types) |\n| `errors` | — |\n');
    const edges = importsOf(root);
    assert.equal(edges.length, 6);
    const circle = (...files: string[]) => files.map(path.normalize).join(' -> ');
    assert.deepEqual(circles(edges), [circle('core/a.ts', 'core/b.ts', 'core/a.ts'), circle('core/a.ts', 'transports/t.ts', 'core/a.ts')]);
    assert.deepEqual(brokenRules(edges, rules), [
      `${path.normalize('core/a.ts')} imports ${path.normalize('transports/t.ts')}: core may not import transports`,
      `${path.normalize('transports/t.ts')} imports ${path.normalize('core/a.ts')} for values: transports may import core types only`,
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
