/**
 * Log redaction (src/observability/logger.ts): secrets that slip into a log call are censored, at any depth on
 * the general logger and at the top level of the flat access-attempt records written for every request.
 */
import { describe, expect, it } from 'vitest';

import { createAudit, type TokenAttempt } from '../../src/observability/audit.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { CapturedLogs } from '../support/logs.ts';

const SECRET = 'mfy_a-secret-that-must-never-be-logged';

describe('redaction', () => {
  it('censors secret fields at the top level and one level down on the general logger', () => {
    const logs = new CapturedLogs();
    const log = createLogger('info', logs);
    log.info({ client_secret: SECRET, request: { authorization: `Basic ${SECRET}`, token: SECRET } }, 'x');
    expect(logs.text()).not.toContain(SECRET);
    const [record] = logs.records();
    expect(record?.client_secret).toBe('[redacted]');
    expect(record?.request).toEqual({ authorization: '[redacted]', token: '[redacted]' });
  });

  it('censors a secret field that slipped into an access attempt, keeping the rest of the line', () => {
    const logs = new CapturedLogs();
    const audit = createAudit(createLogger('info', logs));
    const attempt = {
      outcome: 'success',
      client_id: 'c1',
      ip: '127.0.0.1',
      resource: 'https://api.example.com',
      scopes: ['read'],
      jkt: undefined,
      token_type: 'DPoP',
      access_token: SECRET,
      dpop: SECRET,
    } as TokenAttempt;
    audit.tokenRequest(attempt);
    expect(logs.text()).not.toContain(SECRET);
    const [line] = logs.audit('token');
    expect(line).toMatchObject({
      level: 'info',
      component: 'audit',
      client_id: 'c1',
      scopes: ['read'],
      access_token: '[redacted]',
      dpop: '[redacted]',
    });
  });
});
