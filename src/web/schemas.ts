/*
 * web/schemas — the JSON schemas console routes share: a UUID in the path,
 * no query string, a form that carries only its CSRF token. Fastify checks
 * them before a handler runs, so a handler never sees an id that is not a
 * UUID or a form field it did not ask for.
 */

export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

export const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: UUID_PATTERN } } } as const;
export const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;
export const csrfBody = { type: 'object', additionalProperties: false, required: ['_csrf'], properties: { _csrf: { type: 'string', maxLength: 300 } } } as const;
