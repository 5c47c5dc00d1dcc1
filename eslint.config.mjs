import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bin/**', '.gotong/**', 'tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // Workflow code is replayed by Temporal: it must stay deterministic and free of I/O.
    files: ['src/workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*'], message: 'Workflow code must not use Node built-ins; move I/O to an activity.' },
            { group: ['../activities/*', '../db/*', '../client/*', '../dev/*', '../backfill/*'], allowTypeImports: true,
              message: 'Workflow code may only import types from I/O modules.' },
          ],
          paths: ['fs', 'path', 'http', 'https', 'net', 'crypto', 'child_process', 'os', 'pg', 'undici', 'zod'].map((name) => ({
            name,
            message: 'Workflow code must not do I/O or use Node built-ins; move it to an activity.',
          })),
        },
      ],
      'no-restricted-globals': ['error', 'setTimeout', 'setInterval', 'process', 'Buffer'],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'Use workflow time (the sandbox makes Date deterministic, but be explicit).' },
        { object: 'Math', property: 'random', message: 'Use uuid4() or a value passed in.' },
      ],
    },
  },
);
