import type { AdminUserTable, ConsoleSessionTable } from './tables/admin-user.table.ts';
import type { AuditEventTable } from './tables/audit-event.table.ts';
import type {
  ClientGrantTable,
  ClientIntrospectionTable,
  ClientSecretTable,
  ClientTable,
} from './tables/client.table.ts';
import type { OidcPayloadTable } from './tables/oidc-payload.table.ts';
import type { RateLimitTable } from './tables/rate-limit.table.ts';
import type { ClientRegistrationTable, RegistrationTokenTable } from './tables/registration.table.ts';
import type { ReplayMarkerTable } from './tables/replay-marker.table.ts';
import type { ResourceTable } from './tables/resource.table.ts';
import type { RevokedTokenTable } from './tables/revoked-token.table.ts';
import type { SigningKeyTable } from './tables/signing-key.table.ts';

export interface Database {
  resource: ResourceTable;
  client: ClientTable;
  client_secret: ClientSecretTable;
  client_grant: ClientGrantTable;
  client_introspection: ClientIntrospectionTable;
  oidc_payload: OidcPayloadTable;
  replay_marker: ReplayMarkerTable;
  revoked_token: RevokedTokenTable;
  signing_key: SigningKeyTable;
  audit_event: AuditEventTable;
  rate_limit: RateLimitTable;
  registration_token: RegistrationTokenTable;
  client_registration: ClientRegistrationTable;
  admin_user: AdminUserTable;
  console_session: ConsoleSessionTable;
}
