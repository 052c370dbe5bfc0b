import { z } from 'zod';

import { ERROR_CODES, type ErrorCode } from '../errors.ts';
import type { AdminRoute } from './admin.routes.ts';

type JsonSchema = Record<string, unknown>;

const ErrorBody = z
  .object({
    code: z.string().meta({ description: 'Stable error code; programs match on it.' }),
    message: z.string().meta({ description: 'What went wrong and what to change, for a human.' }),
    details: z
      .array(z.object({ path: z.string(), message: z.string() }))
      .optional()
      .meta({ description: 'One entry per invalid input field.' }),
  })
  .meta({ id: 'Error' });

/**
 * Collects JSON Schemas into `components.schemas`. Zod names a schema's definitions by their `meta({ id })`; a
 * schema whose request and response forms differ (defaults, unknown members) keeps both, the response form
 * suffixed.
 */
class SchemaComponents {
  readonly schemas: Record<string, JsonSchema> = {};

  reference(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
    const generated = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' });
    const {
      $defs,
      $schema: _dialect,
      ...root
    } = generated as JsonSchema & { $defs?: Record<string, JsonSchema> };
    const names = new Map<string, string>();
    for (const [id, definition] of Object.entries($defs ?? {})) {
      names.set(id, this.place(id, definition, io));
    }
    const rewrite = (value: JsonSchema): JsonSchema =>
      JSON.parse(
        JSON.stringify(value).replace(/"#\/\$defs\/([^"]+)"/g, (_match, id: string) =>
          JSON.stringify(`#/components/schemas/${names.get(id) ?? id}`),
        ),
      ) as JsonSchema;
    for (const name of names.values()) {
      const placed = this.schemas[name];
      if (placed) this.schemas[name] = rewrite(placed);
    }
    return rewrite(root);
  }

  private place(id: string, definition: JsonSchema, io: 'input' | 'output'): string {
    const existing = this.schemas[id];
    if (existing === undefined || JSON.stringify(existing) === JSON.stringify(definition)) {
      this.schemas[id] = definition;
      return id;
    }
    const alternative = `${id}${io === 'output' ? 'View' : 'Input'}`;
    this.schemas[alternative] = definition;
    return alternative;
  }
}

const ERROR_DESCRIPTIONS: Partial<Record<number, string>> = {
  400: 'Invalid input: the body names every offending field.',
  401: 'No valid DPoP-bound admin token, or no valid DPoP proof (see WWW-Authenticate).',
  403: 'The token lacks the scope this operation needs.',
  404: 'Not found.',
  409: 'Conflicts with the current state.',
  413: 'Request body too large.',
  415: 'Request body not application/json.',
};

/** OpenAPI 3.1 description of the admin API, generated from the same route table and zod schemas it runs on. */
export function buildOpenApiDocument(routes: readonly AdminRoute[], issuer: string): JsonSchema {
  const components = new SchemaComponents();
  const errorRef = components.reference(ErrorBody, 'output');
  const paths: Record<string, Record<string, JsonSchema>> = {};

  for (const route of routes) {
    const parameters = [
      ...describeParameters(route.params, 'path', components),
      ...describeParameters(route.query, 'query', components),
    ];
    const codes: ErrorCode[] = [
      ...route.errors,
      'token_required',
      'invalid_token',
      'invalid_dpop_proof',
      'insufficient_scope',
    ];
    if (route.body) codes.push('invalid_json', 'unsupported_media_type', 'payload_too_large');
    const errorResponses: Record<string, JsonSchema> = {};
    for (const status of [...new Set(codes.map((code) => ERROR_CODES[code]))].sort()) {
      errorResponses[String(status)] = {
        description: `${ERROR_DESCRIPTIONS[status] ?? 'Error.'} Codes: ${codes.filter((c) => ERROR_CODES[c] === status).join(', ')}.`,
        content: { 'application/json': { schema: errorRef } },
      };
    }
    const operation: JsonSchema = {
      operationId: route.operationId,
      summary: route.summary,
      security: [{ dpop: [route.scope] }],
      ...(parameters.length ? { parameters } : {}),
      ...(route.body
        ? {
            requestBody: {
              required: route.bodyOptional !== true,
              content: { 'application/json': { schema: components.reference(route.body, 'input') } },
            },
          }
        : {}),
      responses: {
        [String(route.status)]: route.response
          ? {
              description: 'Success.',
              content: { 'application/json': { schema: components.reference(route.response, 'output') } },
            }
          : { description: 'Done; no content.' },
        ...errorResponses,
      },
    };
    (paths[route.path] ??= {})[route.method.toLowerCase()] = operation;
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'Mayfly admin API',
      version: '1',
      description:
        'Manage resources and clients. Every operation needs an access token issued by this server for the ' +
        `resource ${issuer}/admin, bound to a key (RFC 9449) and presented as "Authorization: DPoP <token>" with a ` +
        'DPoP proof made for the request. Reads need admin:read; changes need admin:write.',
    },
    servers: [{ url: `${issuer}/admin/v1` }],
    paths,
    components: {
      schemas: components.schemas,
      securitySchemes: {
        dpop: {
          type: 'oauth2',
          description: 'client_credentials with a DPoP proof; the token is used with the DPoP scheme.',
          flows: {
            clientCredentials: {
              tokenUrl: `${issuer}/token`,
              scopes: {
                'admin:read': 'Read resources, clients and the audit trail.',
                'admin:write': 'Create, change and delete resources and clients.',
              },
            },
          },
        },
      },
    },
  };
}

function describeParameters(
  schema: z.ZodType | undefined,
  location: 'path' | 'query',
  components: SchemaComponents,
): JsonSchema[] {
  if (!schema) return [];
  const object = components.reference(schema, 'input') as {
    properties?: Record<string, JsonSchema>;
    required?: string[];
  };
  return Object.entries(object.properties ?? {}).map(([name, property]) => {
    const { description, ...rest } = property;
    return {
      name,
      in: location,
      required: location === 'path' || (object.required ?? []).includes(name),
      ...(typeof description === 'string' ? { description } : {}),
      schema: rest,
    };
  });
}
