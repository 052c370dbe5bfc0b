# syntax=docker/dockerfile:1

# Mayfly container image.
#
#   docker build -t mayfly .
#   docker run --env-file .env -p 3000:3000 mayfly
#
# Three stages: `build` compiles TypeScript with the dev dependencies, `deps` installs the production
# dependencies only, and the final stage combines both on a clean base running as the unprivileged
# `node` user. Application files stay owned by root (read-only to the process); only /app/data and
# /app/keys are writable.

# ---- build: compile src/, migrations/ and views/ to dist/ (with the console's assets) -------------
FROM node:24-slim AS build
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY migrations ./migrations
COPY views ./views
RUN npm run build

# ---- deps: production dependencies only ---------------------------------------------------------
FROM node:24-slim AS deps
WORKDIR /app
ENV NODE_ENV=production

COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# ---- runtime ------------------------------------------------------------------------------------
FROM node:24-slim AS runtime
WORKDIR /app

# A young generation of 32 MB semi-spaces: Node's default for this heap size (64 MB) adds about 100 MB of peak
# memory under load for no CPU saved (see README, Performance).
ENV NODE_ENV=production \
    NODE_OPTIONS=--max-semi-space-size=32 \
    PORT=3000 \
    HOST=0.0.0.0 \
    MAYFLY_DATA_DIR=/app/data \
    MAYFLY_KEYS_DIR=/app/keys

# package.json is needed at run time: it declares the compiled output as ES modules.
COPY package.json package-lock.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist

# Writable state: the embedded database (when DATABASE_URL is unset) and local key material.
RUN mkdir -p /app/data /app/keys \
 && chown node:node /app/data /app/keys \
 && chmod 0700 /app/data /app/keys
VOLUME ["/app/data", "/app/keys"]

USER node

EXPOSE 3000

# Liveness: /healthz answers while the process serves requests, whatever the state of the database. Readiness,
# for load balancers and orchestrators, is /readyz: the database is reachable, migrations are current and a
# signing key is active. Keep /readyz out of this check: a database outage should take instances out of rotation,
# not mark every container unhealthy (which schedulers answer with restarts that cannot help).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# Pending database migrations are applied at start-up, under Kysely's migration lock: instances started together
# apply them once. The CLI is `node dist/src/cli/mayfly.js`.
CMD ["node", "dist/src/main.js"]
