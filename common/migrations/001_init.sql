-- imgcache schema, version 1.
--
-- Caching happens at the IMAGE level: one cached_images row per source URL.
-- Chats and participants keep only their source URLs; the cached URL is
-- joined in at read time by the views at the end (nothing is copied back into
-- chats). Byte-identical images share one image_blobs row (content-addressed
-- by SHA-256).
--
-- db_migrate() runs this file in one transaction and records it in
-- imgcache_schema_migrations itself; objects are created in the current
-- schema (the first schema of search_path). No BEGIN/COMMIT in here.

-- Titles, names and URLs are UTF-8 (emoji, any script), and
-- imgcache_initials() normalizes titles to NFC, which PostgreSQL only offers
-- in UTF8 databases: refuse anything else up front with a clear message.
DO $$
BEGIN
    IF getdatabaseencoding() <> 'UTF8' THEN
        RAISE EXCEPTION 'imgcache needs a UTF8 database, this one is %', getdatabaseencoding()
            USING HINT = 'CREATE DATABASE ... ENCODING ''UTF8'' TEMPLATE template0';
    END IF;
END
$$;

-- One row per chat as the Beeper Desktop API lists it.
CREATE TABLE chats (
    chat_id           text PRIMARY KEY,
    account_id        text,
    title             text,
    chat_type         text NOT NULL CHECK (chat_type IN ('single', 'group')),
    network           text,
    img_source_url    text,          -- the chat's own image (groups), as Beeper gives it
    contact_image_url text,          -- set by the user's contacts system, NEVER by sync
    last_activity     timestamptz,
    synced_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chats_img_source_url_idx ON chats USING hash (img_source_url)
    WHERE img_source_url IS NOT NULL;

CREATE TABLE chat_participants (
    chat_id        text NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    participant_id text NOT NULL,
    full_name      text,
    img_source_url text,
    is_self        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (chat_id, participant_id)
);
CREATE INDEX chat_participants_img_source_url_idx ON chat_participants USING hash (img_source_url);

-- Stored image content, one row per distinct SHA-256 of the bytes.
CREATE TABLE image_blobs (
    sha256       text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    storage_key  text NOT NULL UNIQUE,   -- path relative to the storage folder
    content_type text NOT NULL,
    byte_size    bigint NOT NULL CHECK (byte_size >= 0),
    width        int,
    height       int,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per source URL that was downloaded successfully.
CREATE TABLE cached_images (
    source_url    text PRIMARY KEY,
    sha256        text NOT NULL REFERENCES image_blobs (sha256),
    public_url    text NOT NULL,
    content_type  text NOT NULL,
    byte_size     bigint NOT NULL CHECK (byte_size >= 0),
    etag          text,
    last_modified text,                  -- HTTP date as received
    cached_at     timestamptz NOT NULL DEFAULT now(),
    refreshed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cached_images_sha256_idx ON cached_images (sha256);

-- Source URLs whose download failed; permanent ones are not announced again.
CREATE TABLE image_failures (
    source_url      text PRIMARY KEY,
    attempts        int NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    error_class     text NOT NULL,        -- e.g. http_404, not_image, timeout
    last_error      text,                 -- redacted, human readable
    http_status     int,
    permanent       boolean NOT NULL DEFAULT false,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    next_retry_at   timestamptz
);

-- ISO 8601 timestamp with an explicit zone ('Z', '+02:00', '+0200') ->
-- timestamptz; NULL for anything else (absent, malformed, out of range, or
-- without a zone, which would depend on the session's TimeZone). Used by the
-- producer for chats.last_activity so that one bad value from the API does
-- not abort a whole batch. The regex keeps out PostgreSQL's special inputs
-- ('now', 'epoch', 'infinity'); the handler catches impossible dates that
-- pass it ('2024-02-30').
CREATE FUNCTION imgcache_parse_time(s text) RETURNS timestamptz
    LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    IF s IS NULL
       OR s !~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)$' THEN
        RETURN NULL;
    END IF;
    RETURN s::timestamptz;
EXCEPTION
    WHEN datetime_field_overflow OR invalid_datetime_format OR invalid_time_zone_displacement_value THEN
        RETURN NULL;
END
$$;

-- Initials shown when a chat or person has no image: the uppercased first
-- letter (or digit) of each of the first two words of title.
--  * Words are runs separated by whitespace. A word contributes its first
--    letter or digit, wherever it is in the word ('(anna)' -> 'A'); words
--    without any (emoji only, punctuation) are skipped, so '🎉 Party time'
--    gives 'PT'.
--  * Unicode-aware whatever the database's locale: the character classes and
--    upper() use the ICU root collation, so 'élodie' -> 'É', 'жанна' -> 'Ж'.
--    The title is normalized to NFC first so a decomposed 'é' (e + U+0301)
--    gives 'É', not 'E'.
--  * NULL, blank, or a title without any letter or digit gives '?': a
--    one-character placeholder the UI can always draw, and never NULL, so
--    the views need no further fallback.
CREATE FUNCTION imgcache_initials(title text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(string_agg(upper(firsts.c COLLATE "und-x-icu"), '' ORDER BY firsts.n), '?')
    FROM (
        SELECT words.c, words.n
        FROM (
            SELECT substring(t.w COLLATE "und-x-icu" FROM '[[:alnum:]]') AS c, t.n
            FROM regexp_split_to_table(normalize(coalesce(title, ''), NFC) COLLATE "und-x-icu",
                                       '\s+') WITH ORDINALITY AS t(w, n)
        ) words
        WHERE words.c IS NOT NULL
        ORDER BY words.n
        LIMIT 2
    ) firsts
$$;

-- A chat's picture, joined at read time:
--  * its source: for a 'single' chat the other (non-self) participant's
--    image; when there are several non-self participants, the first by
--    participant_id among those that have an image (deterministic); when
--    none has one, the chat's own img_source_url. For a 'group' chat, its
--    own img_source_url.
--  * image_url: the cached copy of that source, else the contacts system's
--    contact_image_url, else NULL; image_source says which
--    ('cached' | 'contact' | 'initials'); initials are always there.
CREATE VIEW chat_avatars AS
SELECT c.chat_id,
       c.title,
       coalesce(ci.public_url, c.contact_image_url) AS image_url,
       CASE
           WHEN ci.public_url IS NOT NULL THEN 'cached'
           WHEN c.contact_image_url IS NOT NULL THEN 'contact'
           ELSE 'initials'
       END AS image_source,
       imgcache_initials(c.title) AS initials,
       src.source_url
FROM chats c
CROSS JOIN LATERAL (
    SELECT CASE
               WHEN c.chat_type = 'single' THEN
                   coalesce((SELECT p.img_source_url
                             FROM chat_participants p
                             WHERE p.chat_id = c.chat_id AND NOT p.is_self
                               AND p.img_source_url IS NOT NULL
                             ORDER BY p.participant_id
                             LIMIT 1),
                            c.img_source_url)
               ELSE c.img_source_url
           END AS source_url
) src
LEFT JOIN cached_images ci ON ci.source_url = src.source_url;

-- A participant's picture: the cached copy of their image, else NULL (the
-- UI draws the initials).
CREATE VIEW participant_avatars AS
SELECT p.chat_id,
       p.participant_id,
       p.full_name,
       ci.public_url AS image_url,
       imgcache_initials(p.full_name) AS initials
FROM chat_participants p
LEFT JOIN cached_images ci ON ci.source_url = p.img_source_url;
