import { Validator } from '@seriousme/openapi-schema-validator';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';

import { ADMIN_ROUTES } from '../../src/admin/admin.routes.ts';
import { ClientInput, ClientUpdate } from '../../src/clients/client.schemas.ts';
import { ResourceInput } from '../../src/clients/resource.schemas.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

interface Document {
  openapi: string;
  servers: { url: string }[];
  paths: Record<string, Record<string, { operationId: string; security: { dpop: string[] }[] }>>;
  components: { schemas: Record<string, { properties?: Record<string, unknown>; required?: string[] }> };
}

/** Issue 3, item 1: an OpenAPI 3.1 document, generated from the schemas the API validates with. */
let server: TestServer;
let document: Document;

beforeAll(async () => {
  server = await startTestServer();
  const response = await request(server.url).get('/admin/v1/openapi.json');
  expect(response.status).toBe(200);
  expect(response.headers['content-type']).toMatch(/application\/json/);
  document = response.body as Document;
});

afterAll(async () => {
  await server.close();
});

describe('the admin API OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const result = await new Validator().validate(document as unknown as Record<string, unknown>);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(document.openapi).toBe('3.1.0');
    expect(document.servers).toEqual([{ url: `${server.url}/admin/v1` }]);
  });

  it('describes every operation the API serves, with the scope it needs', () => {
    for (const route of ADMIN_ROUTES) {
      const operation = document.paths[route.path]?.[route.method.toLowerCase()];
      expect(operation, `${route.method} ${route.path}`).toMatchObject({
        operationId: route.operationId,
        security: [{ dpop: [route.scope] }],
      });
    }
    const described = Object.values(document.paths).flatMap((methods) => Object.keys(methods));
    expect(described).toHaveLength(ADMIN_ROUTES.length);
  });

  it('resolves every reference', () => {
    const text = JSON.stringify(document);
    const references = [...text.matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]);
    expect(references.length).toBeGreaterThan(10);
    for (const name of references) expect(document.components.schemas, name).toHaveProperty(name as string);
  });

  it.each([
    ['ResourceInput', ResourceInput],
    ['ClientInput', ClientInput],
    ['ClientUpdate', ClientUpdate],
  ] as const)(
    'states the members and required fields of %s exactly as the validating schema',
    (name, schema) => {
      const component = document.components.schemas[name];
      const expected = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as {
        $defs: Record<string, { properties: Record<string, unknown>; required?: string[] }>;
      };
      const own = expected.$defs[name];
      expect(Object.keys(component?.properties ?? {}).sort()).toEqual(
        Object.keys(own?.properties ?? {}).sort(),
      );
      expect(component?.required ?? []).toEqual(own?.required ?? []);
    },
  );
});
