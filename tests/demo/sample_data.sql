-- Sample data shaped like the product's tables, as Prisma creates them: quoted camelCase
-- names, timestamp(3) without time zone holding UTC.
SELECT setseed(0.42);

CREATE TABLE "ConversationTrace" (
    id               text PRIMARY KEY,
    "conversationId" text NOT NULL,
    "createdAt"      timestamp(3) NOT NULL DEFAULT timezone('UTC', now()),
    payload          bytea NOT NULL,           -- encrypted PII in the real application
    "expiresAt"      timestamp(3)              -- NULL: never expires
);
CREATE INDEX "ConversationTrace_expiresAt_idx" ON "ConversationTrace" ("expiresAt");

CREATE TABLE "AgentUsage" (
    id             text PRIMARY KEY,
    "agentId"      text NOT NULL,
    "timestamp"    timestamp(3) NOT NULL,
    "inputTokens"  integer NOT NULL,
    "outputTokens" integer NOT NULL
);
CREATE INDEX "AgentUsage_timestamp_idx" ON "AgentUsage" ("timestamp");

-- 120,000 traces created over the last 180 days with a 90-day expiry; 30% never expire.
INSERT INTO "ConversationTrace" (id, "conversationId", "createdAt", payload, "expiresAt")
SELECT 'ct_' || md5(g::text),
       'conv_' || (g % 9000),
       created,
       decode(md5(random()::text) || md5(random()::text), 'hex'),
       CASE WHEN random() < 0.3 THEN NULL ELSE created + interval '90 days' END
  FROM (SELECT g, timezone('UTC', now()) - random() * interval '180 days' AS created
          FROM generate_series(1, 120000) g) s;

-- 100,000 usage rows over the last 180 days.
INSERT INTO "AgentUsage" (id, "agentId", "timestamp", "inputTokens", "outputTokens")
SELECT 'au_' || md5(g::text),
       'agent_' || (g % 40),
       timezone('UTC', now()) - random() * interval '180 days',
       (random() * 4000)::int,
       (random() * 1000)::int
  FROM generate_series(1, 100000) g;

ANALYZE "ConversationTrace", "AgentUsage";

-- The voice engine's recordings: 3,000 over the last 180 days. A few have no SID or a
-- malformed one (never sent to Twilio), a few were soft-deleted by hand already.
CREATE TABLE voice_recordings (
    id                   bigserial PRIMARY KEY,
    created_at           timestamptz NOT NULL,
    twilio_recording_sid text,
    deleted_at           timestamptz,
    deletion_reason      text
);
CREATE INDEX voice_recordings_created_at_idx ON voice_recordings (created_at);
INSERT INTO voice_recordings (created_at, twilio_recording_sid)
SELECT now() - random() * interval '180 days',
       CASE WHEN g % 200 = 0 THEN NULL
            WHEN g % 200 = 1 THEN 'RE' || left(md5(g::text), 10)
            ELSE 'RE' || md5('recording' || g) END
  FROM generate_series(1, 3000) g;
UPDATE voice_recordings SET deleted_at = created_at + interval '1 day', deletion_reason = 'user_request'
 WHERE id % 97 = 0;
ANALYZE voice_recordings;

