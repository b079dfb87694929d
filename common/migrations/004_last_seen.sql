-- imgcache schema, version 4: when was a source URL last referenced, for
-- `imgcache-producer gc`.
--
-- Import and sync set last_seen_at on the cached_images and image_failures
-- rows of every URL they see, in the same statement that upserts the chats
-- (common/db.c). gc removes a row only when no chat or participant
-- references its URL now AND last_seen_at is older than the grace period;
-- existing rows start at the migration's time, so nothing is collected
-- before a full grace period has passed.
ALTER TABLE cached_images ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE image_failures ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now();
-- No index on last_seen_at: gc reads every row anyway (it must look up the
-- references of each), and without an index the marking updates stay HOT
-- (no index entry written per mark).
