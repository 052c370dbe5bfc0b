/**
 * Settings that keep rate limits and authentication-failure backoff out of the way of test files that send many
 * requests, most of them refused on purpose. Blocking must come after slowing down (the configuration refuses
 * equal values), hence 100001.
 */
export const UNTHROTTLED: Readonly<Record<string, string>> = {
  MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT: '100000',
  MAYFLY_RATE_LIMIT_TOKEN_PER_ADDRESS: '100000',
  MAYFLY_RATE_LIMIT_INTROSPECTION_PER_CLIENT: '100000',
  MAYFLY_RATE_LIMIT_INTROSPECTION_PER_ADDRESS: '100000',
  MAYFLY_AUTH_FAILURE_SLOW_AFTER: '100000',
  MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '100001',
};
