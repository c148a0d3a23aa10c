// Lint: typescript-eslint's type-checked rules, Prettier owns the layout, and the import rule
// that keeps the architecture: imports run downward only,
//   cli -> agent | reactor -> consul | dataplane | state | config | log -> core
// A wrong-way import is a lint error, so it fails CI.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

const LAYERS = {
  core: [],
  config: ['core'],
  log: ['core'],
  consul: ['core'],
  dataplane: ['core'],
  state: ['core'],
  agent: ['core', 'config', 'log', 'consul', 'dataplane', 'state'],
  reactor: ['core', 'config', 'log', 'consul'],
  cli: ['core', 'config', 'log', 'consul', 'dataplane', 'state', 'agent', 'reactor'],
};
const TOP = Object.keys(LAYERS);

/** For files in src/<layer>/, forbid imports of every src folder the layer may not use. */
function layerRule(layer) {
  const forbidden = TOP.filter((t) => t !== layer && !LAYERS[layer].includes(t));
  const patterns = forbidden.map((t) => ({
    group: [`**/src/${t}/**`, ...['../', '../../', '../../../', '../../../../'].map((up) => `${up}${t}/**`)],
    message: `src/${layer} may not import src/${t}: imports run cli -> agent|reactor -> consul|dataplane|state|config|log -> core`,
  }));
  if (layer === 'core') {
    patterns.push({ group: ['node:*', 'fs', 'child_process', 'net', 'http'], message: 'src/core is pure: no I/O modules' });
    patterns.push({ group: ['pino', 'consul', 'msgpackr', 'commander', 'prom-client'], message: 'src/core is pure: no adapters' });
  }
  return {
    files: [`src/${layer}/**/*.ts`],
    rules: { 'no-restricted-imports': ['error', { patterns }] },
  };
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true, allowNullish: true }],
      eqeqeq: ['error', 'always'],
      // node:test's test()/describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite', 'before', 'after'] }],
        },
      ],
      // Hostile input is cleaned of control characters on purpose (printable(), syslog framing).
      'no-control-regex': 'off',
      'no-restricted-syntax': ['error', { selector: 'TSAsExpression > TSAnyKeyword', message: 'no casts to any' }],
    },
  },
  ...TOP.map(layerRule),
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      parserOptions: { projectService: false },
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly' },
    },
  },
  {
    // Fakes implement async interfaces without awaiting anything.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/require-await': 'off' },
  },
  prettier,
);
