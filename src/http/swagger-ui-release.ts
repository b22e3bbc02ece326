/** The swagger-ui-dist release /docs runs. */
export const SWAGGER_UI_VERSION = '5.35.0';

/** Where its files come from by default (DOCS_ASSETS_URL): jsDelivr's copy of that npm release. */
export const DEFAULT_DOCS_ASSETS_URL = `https://cdn.jsdelivr.net/npm/swagger-ui-dist@${SWAGGER_UI_VERSION}`;

/**
 * The release's two files with their Subresource Integrity (SHA-384 of the files as published
 * on npm; jsDelivr serves them byte for byte). The browser runs them only if they match: a CDN
 * (or a mirror) that served anything else would run it in this origin, next to the sign-in
 * cookie. Updating SWAGGER_UI_VERSION means updating these (test/http/openapi.test.ts checks
 * them against the installed swagger-ui-dist).
 */
export const SWAGGER_UI_FILES = {
  css: { name: 'swagger-ui.css', integrity: 'sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I' },
  js: { name: 'swagger-ui-bundle.js', integrity: 'sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9' },
} as const;
