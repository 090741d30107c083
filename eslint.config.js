import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: { console: 'readonly', process: 'readonly', Buffer: 'readonly' } },
  },
  {
    // The message path. In Node 20 the globals `Buffer` and `process` are accessors on globalThis, so each use from
    // optimized code is a getter call; imported, they are module bindings (docs/performance.md, session 23).
    files: [
      'src/connection/**/*.ts',
      'src/protocol/**/*.ts',
      'src/handlers/**/*.ts',
      'src/routing/**/*.ts',
      'src/session/**/*.ts',
      'src/transport/handle-socket.ts',
    ],
    rules: {
      'no-restricted-globals': [
        'error',
        { name: 'Buffer', message: "import { Buffer } from 'node:buffer': the global is a getter on the message path" },
        { name: 'process', message: "import from 'node:process': the global is a getter on the message path" },
      ],
    },
  },
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
);
