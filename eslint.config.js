import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['scratch/', 'node_modules/', 'dist/', 'dist-worker/', '.wrangler/', 'data/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module' },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  {
    // The examples are plain scripts for Node and the browser: their runtime globals.
    files: ['examples/**/*.{js,mjs}'],
    languageOptions: {
      globals: Object.fromEntries(
        ['process', 'console', 'fetch', 'crypto', 'URL', 'URLSearchParams', 'TextDecoderStream', 'AbortController', 'document', 'location'].map((name) => [name, 'readonly']),
      ),
    },
  },
  {
    // Only the config module and the Node entry may read the environment.
    files: ['src/**/*.ts'],
    ignores: ['src/node/main.ts', 'src/node/cluster-main.ts'],
    rules: {
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'Read configuration through src/config.ts.' }],
    },
  },
);
