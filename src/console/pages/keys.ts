import { MayflyError } from '../../errors.ts';
import { keysPage, revokeKeyPage, type KeyView } from '../../../views/keys.ts';
import type { ConsolePage } from '../console.ts';
import { requireWrite } from '../http.ts';

const listKeys = async (admin: (id: string) => Promise<unknown>) =>
  ((await admin('listSigningKeys')) as { items: KeyView[] }).items;

export const KEY_PAGES: readonly ConsolePage[] = [
  {
    method: 'GET',
    path: '/keys',
    handle: async (request) => ({ html: keysPage(request.page, await listKeys(request.admin)) }),
  },
  {
    method: 'POST',
    path: '/keys/rotate',
    async handle(request) {
      requireWrite(request);
      const immediate = request.form.immediate === 'true';
      const result = await request.admin<{ key: KeyView; created: boolean }>('rotateSigningKey', {
        body: { immediate },
      });
      const notice = !result.created
        ? `A successor (${result.key.kid}) was already published; it is kept.`
        : immediate
          ? `Key ${result.key.kid} signs from now on.`
          : `Key ${result.key.kid} is published and signs from ${result.key.activates_at}.`;
      return { redirect: '/console/keys', notice };
    },
  },
  {
    method: 'GET',
    path: '/keys/{kid}/revoke',
    async handle(request) {
      requireWrite(request);
      const key = (await listKeys(request.admin)).find((candidate) => candidate.kid === request.params.kid);
      if (!key) throw new MayflyError('key_not_found', `no signing key with id ${request.params.kid ?? ''}`);
      return { html: revokeKeyPage(request.page, key) };
    },
  },
  {
    method: 'POST',
    path: '/keys/{kid}/revoke',
    async handle(request) {
      requireWrite(request);
      const result = await request.admin<{ key: KeyView; signing_kid: string }>('revokeSigningKey', {
        params: { kid: request.params.kid },
      });
      return {
        redirect: '/console/keys',
        notice: `Key ${result.key.kid} is revoked. Key ${result.signing_kid} signs now.`,
      };
    },
  },
];
