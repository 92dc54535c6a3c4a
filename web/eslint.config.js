// ESLint (flat config): the recommended rules, the browser's globals in src/, Node's in the config
// files, and the import rules: imports resolve, and no module imports itself back through others
// (pages never import main.js; shared state and navigation live in session.js and router.js).
import js from '@eslint/js'
import { importX } from 'eslint-plugin-import-x'
import globals from 'globals'

export default [
  { ignores: ['node_modules/', 'dist/'] },
  js.configs.recommended,
  importX.flatConfigs.recommended,
  {
    files: ['**/*.js'],
    languageOptions: { ecmaVersion: 'latest', sourceType: 'module' },
    rules: {
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-self-import': 'error',
      'import-x/no-useless-path-segments': 'error',
      'no-unused-vars': ['error', { args: 'after-used', caughtErrors: 'none' }],
      eqeqeq: ['error', 'smart'],
      'prefer-const': 'error',
    },
  },
  { files: ['src/**/*.js'], languageOptions: { globals: globals.browser } },
  { files: ['*.config.js'], languageOptions: { globals: globals.node } },
]
