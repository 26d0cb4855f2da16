// ESLint flat config: the recommended JavaScript and typescript-eslint rules, plus a few that catch real bugs here.
// Formatting is Prettier's job (.prettierrc.json).
import eslint from "@eslint/js";
import { defineConfig, globalIgnores } from "eslint/config";
import tseslint from "typescript-eslint";

export default defineConfig(
    // Copies of the real kiloclaw checkout's files stay as upstream writes them.
    globalIgnores(["node_modules/", ".sandbox/", ".staged-contexts/", "bin/", "sandbox/fixtures/"]),
    eslint.configs.recommended,
    tseslint.configs.recommended,
    {
        rules: {
            // `const { __provider, ...props } = inputs` drops a key on purpose; `_arg` marks an unused parameter.
            "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", ignoreRestSiblings: true }],
            eqeqeq: ["error", "smart"],
            "no-throw-literal": "error",
            "prefer-const": "error",
            "object-shorthand": ["error", "properties"],
        },
    },
    {
        // Typed rules (they read the tsconfig projects): an un-awaited promise in a provider, an emulator or a test is an error nobody sees.
        files: ["**/*.ts"],
        languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
        rules: {
            "@typescript-eslint/no-floating-promises": "error",
            "@typescript-eslint/no-misused-promises": "error",
        },
    },
    {
        // scripts/ts-register.js runs before any TypeScript loader (Pulumi.yaml's nodeargs): CommonJS for node.
        files: ["scripts/**/*.js"],
        languageOptions: { sourceType: "commonjs", globals: { require: "readonly", module: "readonly", __dirname: "readonly", process: "readonly" } },
        rules: { "@typescript-eslint/no-require-imports": "off" },
    },
    {
        // Providers require modules inside their methods on purpose: closure serialization then captures
        // `require("x")` calls instead of module objects it cannot serialize.
        files: ["dynamic-providers/**/*.ts"],
        rules: { "@typescript-eslint/no-require-imports": "off" },
    },
    {
        // Tests reach into registered inputs and protocol objects whose shapes they assert on.
        files: ["test/**/*.ts"],
        rules: { "@typescript-eslint/no-explicit-any": "off" },
    },
);
