// typescript-eslint recommendedTypeChecked plus the rules STYLE.md asks for, and the layers: which folder may
// import which (docs/architecture.md, "Packages and layers"), checked with no-restricted-imports.
import { builtinModules } from 'node:module';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
// Formatting is Prettier's (npm run format; checked by npm run lint): rules that would disagree with it are off.
import prettierConfig from 'eslint-config-prettier';

// ---- Layers ------------------------------------------------------------------------------------------------
// Inside a package a folder is a room with one door: other folders import it only through its index.ts. The
// table says which rooms each room may enter (besides itself, node built-ins and third-party packages); it is
// the table of docs/architecture.md: change both together. A name ending in .js is a top-level file of src
// (the others, such as runner.ts and index.ts, sit above every room).

/** Any room of the package may be imported (the top of a package's layers). */
const ANY = '*';

/**
 * Per package src: `rooms` (folder -> the folders and top-level files it may import, or ANY folder) and
 * `packages` (the only @warren/* packages its rooms may import, by name without subpath).
 */
const LAYERS = {
  'packages/runner/src': {
    rooms: {
      linux: [],
      image: ['linux'],
      devcontainer: [],
      builder: ['image', 'devcontainer', 'linux'],
      environment: ['linux'],
      'linux-backend': ['linux', 'image', 'devcontainer', 'builder', 'environment', 'config.js'],
      ports: ['environment', 'linux'],
      activity: ['environment', 'linux'],
      // the CPU burst controller (docs/design/0015): reads and writes cgroups through linux/.
      resources: ['environment', 'linux'],
      // Prometheus registry (docs/design/0014): per-environment usage from the backend contract at scrape time.
      metrics: ['environment'],
      access: ['environment', 'linux'],
      proxy: ['access', 'environment', 'ports', 'linux'],
      ssh: ['access', 'environment', 'ports', 'linux'],
      // config.ts is the runner's configuration schema (base + zod only).
      controller: ['access', 'environment', 'config.js'],
    },
    packages: ['base', 'api'],
  },
  'packages/server/src': {
    rooms: {
      storage: [],
      auth: ['storage'],
      controllers: ['storage'],
      http: ANY,
    },
    packages: ['base', 'api'],
  },
};

/** Rooms nest at most this deep (room/sub/sub/file.ts); a deeper file fails the lint until this grows. */
const MAX_DEPTH = 3;

/** Tests and their helpers: they may also import other rooms' test helpers and e2e/ (fixtures, harness). */
const TEST_FILES = ['**/*.test.ts', '**/testing/**', '**/testing.ts', '**/*-suite.ts'];

/** A relative specifier, matched from just after its leading `./` and `../` segments. */
const AFTER_DOTS = String.raw`^(?:\.\.?\/)+(?!\.)`;
/** Test helpers as seen from outside their folder: a testing/ folder, testing.js or *-suite.js, and e2e/. */
const TEST_SUPPORT = String.raw`(?:(?:[^/]+\/)*testing\/|(?:[^/]+\/)+(?:testing|[^/]+-suite)\.js$|e2e\/)`;

/** Every package src: enter another folder only by its index.js; only tests use test helpers. */
const indexPatterns = (isTest) => [
  {
    regex: `${AFTER_DOTS}(?![^/]+$)(?![^/]+\\/index\\.js$)(?!${TEST_SUPPORT})`,
    message:
      'Import another folder through its index.ts (`<folder>/index.js`), not a file inside it; add a named re-export to that index.ts if it lacks one.',
  },
  ...(isTest
    ? []
    : [
        {
          regex: `${AFTER_DOTS}${TEST_SUPPORT}`,
          message: 'Only tests (*.test.ts, testing/, testing.ts, *-suite.ts) may import test helpers or e2e/.',
        },
      ]),
];

const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const oneOf = (names) => names.map(escape).join('|');

/** The layer rules for a file `depth` folders below its package's src, in room `room` of `layer`. */
function layerPatterns(src, layer, room, depth) {
  const where = `${src.replace('packages/', '')}/${room}/`;
  const up = String.raw`^(?:\.\.\/){${depth}}`;
  const allowed = layer.rooms[room];
  const folders = allowed === ANY ? ANY : allowed.filter((name) => !name.endsWith('.js'));
  const files = allowed === ANY ? [] : allowed.filter((name) => name.endsWith('.js'));
  const patterns = [
    {
      regex: `^@warren\\/(?!(?:${oneOf(layer.packages)})$)`,
      message: `${where} may import only ${layer.packages.map((name) => `@warren/${name}`).join(' and ')} among Warren's packages, by package name.`,
    },
    {
      regex: files.length ? `${up}(?!(?:${oneOf(files)})$)[^./][^/]*$` : `${up}[^./][^/]*$`,
      message: `${where} may import ${files.length ? `only ${files.join(', ')} among` : 'none of'} the top-level files of ${src}: they sit above its folders.`,
    },
    {
      regex: String.raw`^(?:\.\.\/){${depth + 1}}(?!(?:\.\.\/)*e2e\/)`,
      message: `Do not import out of ${src} by a relative path: import another package by its name (@warren/...).`,
    },
  ];
  if (folders !== ANY) {
    patterns.push({
      regex: `${up}(?!(?:${oneOf([room, ...folders])})\\/)[^./][^/]*\\/`,
      message:
        `${where} may import ${folders.length ? `only ${folders.map((name) => `${name}/`).join(', ')} among the other folders` : 'no other folder'} ` +
        `of ${src} (docs/architecture.md, "Packages and layers"): move the shared code down a layer, or change that ` +
        'table and LAYERS in eslint.config.js together.',
    });
  }
  return patterns;
}

/**
 * Two config blocks for `files`: one for code, one for tests (a nested files array means all its globs match),
 * each with the whole no-restricted-imports list, since a later block replaces the rule's options.
 */
function restrict(files, patternsFor) {
  const rule = (isTest) => ({
    'no-restricted-imports': ['error', { patterns: patternsFor(isTest).map((pattern) => ({ ...pattern, caseSensitive: true })) }],
  });
  return [
    { files: [files], ignores: TEST_FILES, rules: rule(false) },
    { files: TEST_FILES.map((test) => [files, test]), rules: rule(true) },
  ];
}

/** node:* and the bare names of node built-ins (`fs`, `events`, `fs/promises`...). */
const NODE_BUILTIN = `^(?:node:|(?:${oneOf(builtinModules)})(?:\\/|$))`;

/** Later blocks override earlier ones for the same rule, so each block carries every pattern for its files. */
const layerBlocks = [
  ...restrict('packages/*/src/**/*.ts', indexPatterns),
  ...restrict('packages/base/src/**/*.ts', (isTest) => [
    ...indexPatterns(isTest),
    {
      regex: isTest ? '^(?!\\.|vitest$)' : '^(?!\\.)',
      message: 'packages/base is the bottom layer and does no I/O: it imports nothing but its own files (no packages, no node:*).',
    },
  ]),
  ...restrict('packages/api/src/**/*.ts', (isTest) => [
    ...indexPatterns(isTest),
    ...(isTest
      ? []
      : [
          {
            regex: NODE_BUILTIN,
            message: 'packages/api runs in browsers too: no node:* modules (use web APIs: fetch, URL, TextEncoder, crypto.subtle).',
          },
        ]),
  ]),
  ...Object.entries(LAYERS).flatMap(([src, layer]) => [
    ...restrict(`${src}/*/**/*.ts`, (isTest) => [
      ...indexPatterns(isTest),
      {
        regex: '^',
        message: `This folder of ${src} is not in LAYERS of eslint.config.js (a new folder, or nested deeper than MAX_DEPTH): add it there and to docs/architecture.md.`,
      },
    ]),
    ...Object.keys(layer.rooms).flatMap((room) =>
      Array.from({ length: MAX_DEPTH }, (_, index) => index + 1).flatMap((depth) =>
        restrict(`${src}/${room}/${'*/'.repeat(depth - 1)}*.ts`, (isTest) => [
          ...indexPatterns(isTest),
          ...layerPatterns(src, layer, room, depth),
        ]),
      ),
    ),
  ]),
];

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'bench/**/*.js', '**/*.config.*', 'packages/cli/bin/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  ...layerBlocks,
  prettierConfig,
);
