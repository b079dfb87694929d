-- imgcache schema, version 6: gc's clock starts when a URL stops being
-- referenced, instead of import and sync marking every URL they see.
--
-- Version 4's last_seen_at made every import or sync write the
-- cached_images row of each URL it saw (once an hour at most), which
-- slowed the import of an already-cached fleet. A URL can only stop
-- being referenced when a chat or participant row pointing at it is
-- re-pointed or deleted, so triggers on those two tables record that
-- moment instead; an import that changes nothing writes nothing here.
--
-- unreferenced_at: the last time a chat or participant stopped pointing
-- at the URL (re-pointed, deleted, truncated), or when the row was
-- created. gc (common/db_gc.c) removes a row only when nothing references
-- its URL now AND unreferenced_at is older than the grace period. That is
-- exactly "unreferenced for longer than the grace": any reference that
-- existed since would have restarted the clock when it went away. A URL
-- that is referenced again needs no write: gc sees the reference.
ALTER TABLE cached_images ADD COLUMN unreferenced_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE image_failures ADD COLUMN unreferenced_at timestamptz NOT NULL DEFAULT now();
-- Existing rows, once: the last import that saw the URL is the latest
-- moment it is known to have been referenced.
UPDATE cached_images SET unreferenced_at = last_seen_at;
UPDATE image_failures SET unreferenced_at = last_seen_at;
ALTER TABLE cached_images DROP COLUMN last_seen_at;
ALTER TABLE image_failures DROP COLUMN last_seen_at;

-- The URLs lost a reference now: their grace period starts again. The
-- cached rows are locked in URL order, the order a worker's commit takes
-- them in, so the two cannot deadlock. PL/pgSQL keeps the two plans for
-- the session (an SQL function would plan them at every call).
CREATE FUNCTION imgcache_urls_unreferenced(urls text[]) RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    IF cardinality(urls) = 0 THEN
        RETURN;
    END IF;
    UPDATE cached_images ci SET unreferenced_at = now()
    FROM (SELECT s.source_url FROM cached_images s WHERE s.source_url = ANY (urls)
          ORDER BY s.source_url FOR UPDATE) l
    WHERE ci.source_url = l.source_url;
    UPDATE image_failures f SET unreferenced_at = now() WHERE f.source_url = ANY (urls);
END
$$;

-- A chat re-pointed to another picture. A row trigger whose WHEN is false
-- costs no function call: a re-sync updates every chat (synced_at) but
-- re-points almost none, which a statement trigger would have to copy
-- into a transition table to find out.
CREATE FUNCTION imgcache_url_repointed() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM imgcache_urls_unreferenced(ARRAY[OLD.img_source_url]);
    RETURN NULL;
END
$$;

-- Participants re-pointed (Beeper's new media id): the upsert rewrites a
-- participant only when something changed, so the transition tables hold
-- the few changed rows, and a batch of them costs one call.
CREATE FUNCTION imgcache_urls_repointed() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM imgcache_urls_unreferenced(ARRAY(
        SELECT DISTINCT o.img_source_url
        FROM old_rows o JOIN new_rows n ON n.chat_id = o.chat_id AND n.participant_id = o.participant_id
        WHERE o.img_source_url IS NOT NULL AND o.img_source_url IS DISTINCT FROM n.img_source_url));
    RETURN NULL;
END
$$;

-- Deleted rows (a participant left, a chat removed and its participants
-- with it): one call per statement, the URLs read from the transition
-- table.
CREATE FUNCTION imgcache_urls_deleted() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM imgcache_urls_unreferenced(
        ARRAY(SELECT DISTINCT d.img_source_url FROM deleted_rows d WHERE d.img_source_url IS NOT NULL));
    RETURN NULL;
END
$$;

-- TRUNCATE removes every reference at once (no row triggers fire).
CREATE FUNCTION imgcache_urls_truncated() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE cached_images SET unreferenced_at = now();
    UPDATE image_failures SET unreferenced_at = now();
    RETURN NULL;
END
$$;

CREATE TRIGGER chats_url_repointed AFTER UPDATE OF img_source_url ON chats
    FOR EACH ROW
    WHEN (OLD.img_source_url IS NOT NULL AND OLD.img_source_url IS DISTINCT FROM NEW.img_source_url)
    EXECUTE FUNCTION imgcache_url_repointed();
CREATE TRIGGER chat_participants_urls_repointed AFTER UPDATE ON chat_participants
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION imgcache_urls_repointed();
CREATE TRIGGER chats_urls_deleted AFTER DELETE ON chats
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION imgcache_urls_deleted();
CREATE TRIGGER chat_participants_urls_deleted AFTER DELETE ON chat_participants
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION imgcache_urls_deleted();
CREATE TRIGGER chats_urls_truncated AFTER TRUNCATE ON chats
    FOR EACH STATEMENT EXECUTE FUNCTION imgcache_urls_truncated();
CREATE TRIGGER chat_participants_urls_truncated AFTER TRUNCATE ON chat_participants
    FOR EACH STATEMENT EXECUTE FUNCTION imgcache_urls_truncated();
